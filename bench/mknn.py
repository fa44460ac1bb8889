"""Benchmark: `score_heads` on compact head features against an uncompressed per-head reference.

Shapes of Qwen2.5-3B (36 layers x 16 heads, d_model 2048, head_dim 128) and N=1000 samples, random weights and
activations. Both sides start from the same pooled attention outputs `a` [N, L, H, 128] and o_proj weights:
- reference: materialises every head's M(l,h) = a_h W_O,h^T in d_model ([N, L, H, 2048], what a capture without the
  QR trick stores), then loops over heads: L2-normalise, N x N similarity, full argsort per row (as PRH's
  compute_nearest_neighbors), k-NN masks, overlap with the teacher's;
- hera_nbs: compact features a_h R_h^T [N, L, H, 128] (capture chapter), then `score_heads` (all heads batched).
Peak memory is the peak RSS above the common baseline (inputs in memory) while each side builds its features and
scores them, sampled every 2 ms. The last line printed is one JSON object.

    python bench/mknn.py [--n 1000] [--layers 36] [--threads 2]
"""
import argparse, json, threading, time
import psutil, torch
import torch.nn.functional as F
from hera_nbs.heads import compress_heads
from hera_nbs.mknn import score_heads

def peak_rss(fn):
    "Run fn(); return (result, seconds, peak RSS increase in MiB over the RSS at the start)."
    proc, peak, stop = psutil.Process(), [0], threading.Event()
    base = proc.memory_info().rss
    def sample():
        while not stop.is_set(): peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(.002)
    t = threading.Thread(target=sample); t.start()
    t0 = time.perf_counter(); out = fn(); dt = time.perf_counter() - t0
    stop.set(); t.join()
    return out, dt, max(peak[0], proc.memory_info().rss) - base

def reference(a, w, teacher, k):
    "Per head: materialise M in d_model, full similarity, full argsort; as an uncompressed pipeline would."
    n, L, H, hd = a.shape
    full = torch.einsum('nlhd,lohd->nlho', a, w.unflatten(-1, (H, hd)))          # [N, L, H, d_model]
    def knn_mask(x):
        s = (x @ x.T).fill_diagonal_(-1e8)
        m = torch.zeros(n, n); m.scatter_(1, s.argsort(dim=1, descending=True)[:, :k], 1.0); return m
    tm = knn_mask(F.normalize(teacher, dim=-1))
    out = torch.empty(L, H)
    for l in range(L):
        for h in range(H): out[l, h] = (knn_mask(F.normalize(full[:, l, h], dim=-1)) * tm).sum(1).mean() / k
    return out

def ours(a, R, teacher, k): return score_heads(compress_heads(a, R), teacher, k)

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--n', type=int, default=1000); p.add_argument('--layers', type=int, default=36)
    p.add_argument('--heads', type=int, default=16); p.add_argument('--d-model', type=int, default=2048)
    p.add_argument('--head-dim', type=int, default=128); p.add_argument('--k', type=int, default=10)
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads); torch.manual_seed(0)
    n, L, H, d, hd = args.n, args.layers, args.heads, args.d_model, args.head_dim
    a = torch.randn(n, L, H, hd)
    w = torch.randn(L, d, H * hd) / (H * hd) ** .5                          # o_proj weights, per layer
    teacher = torch.randn(n, 1024)
    teacher[:, :hd] += a[:, 0, 0]                                            # one aligned head, so scores vary
    R = torch.linalg.qr(w.unflatten(-1, (H, hd)).permute(0, 2, 1, 3), mode='r').R   # as capture.head_factors
    s_ours, t_ours, m_ours = peak_rss(lambda: ours(a, R, teacher, args.k))
    s_ref, t_ref, m_ref = peak_rss(lambda: reference(a, w, teacher, args.k))
    diff = (s_ours - s_ref).abs().max().item()
    print(f'reference: {t_ref:.2f} s, +{m_ref / 2**20:.0f} MiB | hera_nbs: {t_ours:.2f} s, +{m_ours / 2**20:.0f} MiB | '
          f'mean MKNN {s_ours.mean():.4f}, max {s_ours.max():.4f}')
    print(json.dumps(dict(n=n, layers=L, heads=H, d_model=d, head_dim=hd, k=args.k, threads=args.threads,
                          ref_seconds=round(t_ref, 3), ours_seconds=round(t_ours, 3), speedup=round(t_ref / t_ours, 2),
                          ref_peak_mib=round(m_ref / 2**20, 1), ours_peak_mib=round(m_ours / 2**20, 1),
                          memory_ratio=round(m_ours / m_ref, 4), max_abs_diff=diff)))
