"""Benchmark: one training step with HeRA against the same step without it (lambda_hera=0, hooks not registered).

Same model (the tiny default MLLM, or any `--llm`), same stage-2 batch from the tiny world, same optimizer. Each
variant runs in its own fresh process (so peak memory is its own), alternating plain/HeRA `--reps` times; a
process times `--steps` optimizer steps after `--warmup` and reports the median step time and its peak memory:
CUDA peak allocated bytes on a GPU, else the process's peak RSS (ru_maxrss). Ratios are HeRA / plain of the
medians over repetitions. The last line printed is one JSON object.

    python bench/train_step.py [--llm tiny:llava-qwen2] [--batch 16] [--steps 20] [--reps 3]
"""
import argparse, json, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import torch

def one_variant(args):
    "Run in a child process: time `steps` steps of one variant; print a JSON line."
    from hera_nbs.data import LlavaCollate, LlavaDataset
    from hera_nbs.loss import HeraLoss
    from accelerate import Accelerator
    from hera_nbs.train import HeraModel, StageConfig, TrainConfig, build_models, set_trainable, train_step
    from hera_nbs.world import world_pairs, write_llava
    torch.set_num_threads(args.threads); torch.manual_seed(0)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    cfg = TrainConfig(llm=args.llm, vision=args.vision, teacher=args.teacher, mixed_precision='bf16' if dev == 'cuda' else 'no')
    model, proc, teacher = build_models(cfg, dev)
    with tempfile.TemporaryDirectory() as d:
        write_llava(world_pairs(args.batch, seed=1), d, stage=2)
        ds = LlavaDataset(Path(d)/'stage2.json')
        batch = LlavaCollate(proc, 'chat')([ds[i] for i in range(args.batch)])
        feats = teacher.encode([ds[i]['image'] for i in range(args.batch)]).float()
    batch = {k: v.to(dev) for k, v in batch.items()}
    set_trainable(model, StageConfig(train_llm='full'), 16)
    lam = 0.01 if args.variant == 'hera' else 0.0
    L, H = model.config.text_config.num_hidden_layers, model.config.text_config.num_attention_heads
    heads = [(l % L, (3 * l) % H) for l in range(5)]                      # 5 heads in 5 layers
    hm = HeraModel(model, HeraLoss(k=10).to(dev), heads, lam).to(dev).train()
    opt = torch.optim.AdamW([p for p in hm.parameters() if p.requires_grad], lr=1e-5)
    acc = Accelerator(cpu=dev == 'cpu', mixed_precision='bf16' if dev == 'cuda' else 'no')
    wrapped, opt = acc.prepare(hm, opt)
    def step():
        train_step(acc, wrapped, batch, feats, opt)      # the trainer's step: forward, lm + λ·hera, backward, opt
        if dev == 'cuda': torch.cuda.synchronize()
    for _ in range(args.warmup): step()
    if dev == 'cuda': torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if dev == 'cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(seconds=statistics.median(times), peak_bytes=peak, device=dev)))

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--llm', default='tiny:llava-qwen2'); p.add_argument('--vision', default=None)
    p.add_argument('--teacher', default='tiny'); p.add_argument('--batch', type=int, default=16)
    p.add_argument('--steps', type=int, default=20); p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--reps', type=int, default=3); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--variant', choices=['plain', 'hera'])
    args = p.parse_args()
    if args.variant: one_variant(args); sys.exit()
    runs = {'plain': [], 'hera': []}
    for rep in range(args.reps):
        for v in runs:
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], '--variant', v], capture_output=True, text=True)
            if out.returncode: sys.exit(f'the {v} run failed:\n{out.stderr[-3000:]}')
            runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f'rep {rep} {v:5s}: {runs[v][-1]["seconds"] * 1e3:8.1f} ms/step, peak {runs[v][-1]["peak_bytes"] / 2**20:8.1f} MiB')
    med = lambda v, key: statistics.median(r[key] for r in runs[v])
    print(json.dumps(dict(llm=args.llm, batch=args.batch, steps=args.steps, reps=args.reps, device=runs['hera'][0]['device'],
                          plain_ms=round(med('plain', 'seconds') * 1e3, 2), hera_ms=round(med('hera', 'seconds') * 1e3, 2),
                          time_ratio=round(med('hera', 'seconds') / med('plain', 'seconds'), 4),
                          plain_peak_mib=round(med('plain', 'peak_bytes') / 2**20, 1), hera_peak_mib=round(med('hera', 'peak_bytes') / 2**20, 1),
                          memory_ratio=round(med('hera', 'peak_bytes') / med('plain', 'peak_bytes'), 4))))
