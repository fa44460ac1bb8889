"""Benchmark: MKNN scoring of every head (`score_heads`) against the plain per-head loop and the matmul floor.

Like is compared with like: every side starts from the same compact head features [N, L, H, d] (what a capture
stores) and the same teacher, all in one process, on one thread by default, measured in process CPU seconds, the
sides interleaved over `--reps` repeats (median reported):
- hera_nbs: `score_heads` (streamed Gram row blocks + the compiled top-(k+1) kernel, `07_mknn`);
- plain loop: per head, L2-normalise -> N x N Gram -> `topk(k)` (self masked) -> overlap with the teacher's lists;
  the strongest simple alternative, with no chunking or compiled code;
- floor: per head, the Gram matrix at this machine's matmul rate (`torch.mm` into a reused buffer) plus one read
  pass over it (`sum`): what any exact method that forms the Gram matrix must spend;
- "today's" scores: `lists_from_gram` on each head's whole Gram matrix (the torch path), to check that the scores
  are identical.
Compression (pooled attention outputs -> compact features, `compress_heads`) is timed on its own. Peak memory is the
RSS increase while a side runs (sampled every 2 ms). The last line printed is one JSON object.

    python bench/mknn.py [--n 1000 5000] [--layouts 30x9x64 36x16x128] [--threads 1] [--reps 3]
"""
import argparse, json, statistics, threading, time
import psutil, torch
import torch.nn.functional as F
from hera_nbs.heads import compress_heads
from hera_nbs.mknn import lists_from_gram, overlap, score_heads


def measured(fn):
    "Run fn(); return (result, process CPU seconds, peak RSS increase in MiB)."
    proc, peak, stop = psutil.Process(), [0], threading.Event()
    base = proc.memory_info().rss
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(.002)
    t = threading.Thread(target=sample)
    t.start()
    t0 = time.thread_time()          # this thread's CPU time: the sampler thread is not counted
    out = fn()
    dt = time.thread_time() - t0
    stop.set()
    t.join()
    return out, dt, (max(peak[0], proc.memory_info().rss) - base) / 2**20


def plain_loop(heads, teacher, k):
    "Per head: normalise, Gram, topk with self masked, overlap with the teacher's lists."
    def lists(x):
        x = F.normalize(x, dim=-1)
        return (x @ x.T).fill_diagonal_(float('-inf')).topk(k, dim=-1).indices
    t = lists(teacher)
    n, L, H, _ = heads.shape
    out = torch.empty(L, H)
    for l in range(L):
        for h in range(H):
            out[l, h] = (lists(heads[:, l, h]).unsqueeze(-1) == t.unsqueeze(-2)).any(-1).sum(-1).float().mean() / k
    return out


def todays(heads, teacher, k):
    "Per head: `lists_from_gram` on the whole Gram matrix (the torch path), then `overlap`."
    def lists(x):
        x = F.normalize(x, dim=-1)
        return lists_from_gram(x @ x.T, k)
    t = lists(teacher)
    n, L, H, _ = heads.shape
    return torch.stack([torch.stack([overlap(lists(heads[:, l, h]), t, k).mean() for h in range(H)])
                        for l in range(L)])


def floor(heads, teacher, k):
    "Per head (and the teacher): the Gram matrix into a reused buffer, and one read pass over it."
    n = len(heads)
    buf, total = torch.empty(n, n), 0.0
    for x in [teacher] + [heads[:, l, h] for l in range(heads.shape[1]) for h in range(heads.shape[2])]:
        x = F.normalize(x, dim=-1)
        total += torch.mm(x, x.T, out=buf).sum().item()
    return total


def case(n, L, H, d, k, reps):
    "One (N, layout): the median CPU seconds and peak memory of each side, the ratios, and the score check."
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, L, H, d, generator=g)
    R = torch.linalg.qr(torch.randn(L, H, 4 * d, d, generator=g), mode='r').R      # as heads.head_factors
    teacher = torch.randn(n, 1024, generator=g)
    teacher[:, :d] += 2 * a[:, 0, 0]                                            # one aligned head: scores vary
    heads, t_comp, _ = measured(lambda: compress_heads(a, R))
    sides = dict(hera_nbs=score_heads, plain_loop=plain_loop, floor=floor)
    runs = {name: [] for name in sides}
    for _ in range(reps):                                                       # interleaved repeats
        for name, fn in sides.items(): runs[name].append(measured(lambda: fn(heads, teacher, k)))
    med = {name: statistics.median(r[1] for r in rs) for name, rs in runs.items()}
    mem = {name: max(r[2] for r in rs) for name, rs in runs.items()}
    ours, plain, ref = runs['hera_nbs'][0][0], runs['plain_loop'][0][0], todays(heads, teacher, k)
    out = dict(n=n, layers=L, heads=H, head_dim=d, k=k, reps=reps,
               seconds={name: round(s, 3) for name, s in med.items()},
               spread={name: [round(r[1], 3) for r in rs] for name, rs in runs.items()},
               speedup_vs_plain=round(med['plain_loop'] / med['hera_nbs'], 2),
               ratio_to_floor=round(med['hera_nbs'] / med['floor'], 2),
               peak_mib={name: round(m, 1) for name, m in mem.items()},
               compress_seconds=round(t_comp, 3),
               identical_to_todays=bool(torch.equal(ours, ref)),
               max_abs_diff_plain=float((ours - plain).abs().max()), mean_mknn=round(ours.mean().item(), 4))
    print(f"N={n} {L}x{H}x{d}: hera_nbs {med['hera_nbs']:.2f} s, plain loop {med['plain_loop']:.2f} s "
          f"({out['speedup_vs_plain']}x), floor {med['floor']:.2f} s (ratio {out['ratio_to_floor']}), "
          f"peak +{mem['hera_nbs']:.0f} / +{mem['plain_loop']:.0f} MiB, identical: {out['identical_to_todays']}",
          flush=True)
    return out


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, nargs='+', default=[1000, 5000], help='sample counts')
    p.add_argument('--layouts', nargs='+', default=['30x9x64', '36x16x128'], help='LAYERSxHEADSxHEAD_DIM')
    p.add_argument('--max-heads', type=int, default=54, help='at N > 2000, time only the first layers (per-head '
                   'cost is what the ratios compare)')
    p.add_argument('--k', type=int, default=10)
    p.add_argument('--reps', type=int, default=3)
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    score_heads(torch.randn(50, 1, 1, 8), torch.randn(50, 8), 5)                # compile the kernel first
    results = []
    for n in args.n:
        for layout in args.layouts:
            L, H, d = map(int, layout.split('x'))
            if n > 2000: L = max(1, min(L, args.max_heads // H))
            results.append(case(n, L, H, d, args.k, args.reps))
    print(json.dumps(dict(threads=args.threads, device='cpu', cases=results,
                          min_speedup_vs_plain=min(r['speedup_vs_plain'] for r in results),
                          max_ratio_to_floor=max(r['ratio_to_floor'] for r in results),
                          all_identical=all(r['identical_to_todays'] for r in results))))
