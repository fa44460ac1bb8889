"""Benchmark: one training step with HeRA against the same step without it (lambda_hera=0, hooks not registered).

Same model (the tiny default MLLM, or any `--llm`), same stage-2 batch from the tiny world, same optimizer. Time:
both variants in one process on the same weights, one step of each in turn (so machine noise hits both alike);
per repeat the median step time of each and their ratio; the time ratio is the median of `--reps` ratios, with its
spread. Peak memory: each variant in its own fresh process (CUDA peak allocated bytes on a GPU, else the peak RSS).
The last line printed is one JSON object.

    python bench/train_step.py [--llm tiny:llava-qwen2] [--batch 16] [--steps 10] [--reps 5] [--threads 1]
"""
import argparse, json, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import torch

def setup(args, lam:float, heads=None):
    "Model, batch, teacher features and the trainer's pieces for one variant (lam=0: no hooks, no HeRA loss)."
    from hera_nbs.data import LlavaCollate, LlavaDataset
    from hera_nbs.loss import HeraLoss
    from accelerate import Accelerator
    from hera_nbs.train import HeraModel, StageConfig, TrainConfig, build_models, set_trainable
    from hera_nbs.world import world_pairs, write_llava
    torch.manual_seed(0)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    cfg = TrainConfig(llm=args.llm, vision=args.vision, teacher=args.teacher,
                      mixed_precision='bf16' if dev == 'cuda' else 'no')
    model, proc, teacher = build_models(cfg, dev)
    with tempfile.TemporaryDirectory() as d:
        write_llava(world_pairs(args.batch, seed=1), d, stage=2)
        ds = LlavaDataset(Path(d)/'stage2.json')
        batch = LlavaCollate(proc, 'chat')([ds[i] for i in range(args.batch)])
        feats = teacher.encode([ds[i]['image'] for i in range(args.batch)]).float()
    batch = {k: v.to(dev) for k, v in batch.items()}
    set_trainable(model, StageConfig(train_llm='full'), 16)
    L, H = model.config.text_config.num_hidden_layers, model.config.text_config.num_attention_heads
    heads = [(l % L, (3 * l) % H) for l in range(5)]                      # 5 heads in 5 layers
    hm = HeraModel(model, HeraLoss(k=10).to(dev), heads, lam).to(dev).train()
    opt = torch.optim.AdamW([p for p in hm.parameters() if p.requires_grad], lr=1e-5)
    acc = Accelerator(cpu=dev == 'cpu', mixed_precision='bf16' if dev == 'cuda' else 'no')
    wrapped, opt = acc.prepare(hm, opt)
    return dev, acc, wrapped, batch, feats, opt

def stepper(dev, acc, wrapped, batch, feats, opt):
    "One trainer step (forward, lm + λ·hera, backward, optimizer), synchronised on a GPU."
    from hera_nbs.train import train_step
    def step():
        train_step(acc, wrapped, batch, feats, opt)
        if dev == 'cuda': torch.cuda.synchronize()
    return step

def peak_of_variant(args):
    "Run in a child process: peak memory of `steps` steps of one variant; print a JSON line."
    torch.set_num_threads(args.threads)
    parts = setup(args, 0.01 if args.variant == 'hera' else 0.0)
    step, dev = stepper(*parts), parts[0]
    for _ in range(args.warmup): step()
    if dev == 'cuda': torch.cuda.reset_peak_memory_stats()
    for _ in range(args.steps): step()
    peak = (torch.cuda.max_memory_allocated() if dev == 'cuda'
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps(dict(peak_bytes=peak, device=dev)))

def interleaved(args)->dict:
    "Both variants in this process on the same weights, one step of each in turn: step times per repeat."
    torch.set_num_threads(args.threads)
    dev, acc, hera, batch, feats, opt = setup(args, 0.01)
    plain = type(hera)(hera.model, hera.loss, [], 0.0)             # the same model: no hooks, no HeRA loss
    steps = dict(plain=stepper(dev, acc, plain, batch, feats, opt), hera=stepper(dev, acc, hera, batch, feats, opt))
    for _ in range(args.warmup):
        for s in steps.values(): s()
    reps = {v: [] for v in steps}
    for _ in range(args.reps):
        times = {v: [] for v in steps}
        for _ in range(args.steps):
            for v, s in steps.items():
                t0 = time.perf_counter()
                s()
                times[v].append(time.perf_counter() - t0)
        for v in steps: reps[v].append(statistics.median(times[v]))
    return reps

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--llm', default='tiny:llava-qwen2')
    p.add_argument('--vision', default=None)
    p.add_argument('--teacher', default='tiny')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--steps', type=int, default=10, help='timed steps of each variant per repeat')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--variant', choices=['plain', 'hera'])
    args = p.parse_args()
    if args.variant:
        peak_of_variant(args)
        sys.exit()
    reps = interleaved(args)
    ratios = [h / p for h, p in zip(reps['hera'], reps['plain'])]
    for i, r in enumerate(ratios):
        print(f"rep {i}: plain {reps['plain'][i] * 1e3:.1f} ms, hera {reps['hera'][i] * 1e3:.1f} ms, ratio {r:.4f}")
    peaks = {}
    for v in ('plain', 'hera'):                                        # peak memory: each variant in its own process
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], '--variant', v, '--reps', '1'],
                             capture_output=True, text=True)
        if out.returncode: sys.exit(f'the {v} run failed:\n{out.stderr[-3000:]}')
        peaks[v] = json.loads(out.stdout.strip().splitlines()[-1])['peak_bytes']
    med = {v: statistics.median(r) for v, r in reps.items()}
    print(json.dumps(dict(llm=args.llm, batch=args.batch, steps=args.steps, reps=args.reps, threads=args.threads,
                          device='cuda' if torch.cuda.is_available() else 'cpu',
                          plain_ms=round(med['plain'] * 1e3, 2), hera_ms=round(med['hera'] * 1e3, 2),
                          time_ratio=round(statistics.median(ratios), 4),
                          time_ratio_spread=[round(min(ratios), 4), round(max(ratios), 4)],
                          plain_peak_mib=round(peaks['plain'] / 2**20, 1), hera_peak_mib=round(peaks['hera'] / 2**20, 1),
                          memory_ratio=round(peaks['hera'] / peaks['plain'], 4))))
