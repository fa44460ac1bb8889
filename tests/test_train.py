"Training: lambda=0 is the plain LLaVA run, exact resume across stages, gradient checkpointing, LoRA, variants."
import math
import pytest, torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration, get_cosine_schedule_with_warmup
from hera_nbs.data import LlavaCollate, LlavaDataset
from hera_nbs.loss import HeraLoss
from hera_nbs.models import tiny_mllm
from hera_nbs.train import HeraConfig, HeraModel, StageConfig, TrainConfig, set_trainable, fit, latest_checkpoint

def _cfg(data, out, **hera):
    return TrainConfig(output_dir=str(out), log_with=None, log_every=1, probe_every=100, checkpoint_every=2,
                       hera=HeraConfig(k=4, score_samples=64, **hera),
                       stage1=StageConfig(data=str(data / 'stage1.json'), batch_size=12, max_steps=4, lr=1e-3),
                       stage2=StageConfig(data=str(data / 'stage2.json'), template='chat', train_llm='full', batch_size=12,
                                          max_steps=4, lr=1e-4))

def test_lambda_zero_is_exactly_the_plain_llava_run(data, tmp_path):
    cfg = _cfg(data, tmp_path / 'run', lambda_hera=0.0)
    cfg.stage2 = None
    fit(cfg, progress=False)
    got = LlavaForConditionalGeneration.from_pretrained(tmp_path / 'run' / 'final').state_dict()
    # an independent plain loop: projector only, AdamW, cosine with warmup, the same data order
    torch.manual_seed(0)
    model, proc = tiny_mllm('llava-qwen2')
    model.requires_grad_(False); model.model.multi_modal_projector.requires_grad_(True); model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(0.03 * 4), 4)
    ds, collate = LlavaDataset(data / 'stage1.json'), LlavaCollate(proc, 'plain')
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).tolist()
    for b in range(4):
        batch = collate([ds[i] for i in perm[b * 12:(b + 1) * 12]])
        model(**{k: batch[k] for k in ('input_ids', 'attention_mask', 'labels', 'pixel_values')}).loss.backward()
        opt.step(); sched.step(); opt.zero_grad()
    mine = model.state_dict()
    assert got.keys() == mine.keys() and all(torch.equal(got[k], mine[k]) for k in mine)

def test_hera_changes_the_run(data, tmp_path):
    a = fit(_cfg(data, tmp_path / 'a', lambda_hera=0.0), progress=False)
    b = fit(_cfg(data, tmp_path / 'b', lambda_hera=1.0), progress=False)
    assert a['stage2']['hera'] is None and math.isfinite(b['stage2']['hera']) and b['stage2']['skipped'] == 0
    wa, wb = (LlavaForConditionalGeneration.from_pretrained(tmp_path / r / 'final').state_dict() for r in 'ab')
    proj = 'model.multi_modal_projector.linear_1.weight'
    assert not torch.equal(wa[proj], wb[proj])     # stage 1: HeRA's gradient reached the projector through the frozen LLM

def test_resume_inside_stage2_is_exact(data, tmp_path):
    fit(_cfg(data, tmp_path / 'full'), progress=False)
    class Killed(Exception): pass
    def kill(stage, step):
        if (stage, step) == ('stage2', 3): raise Killed
    with pytest.raises(Killed): fit(_cfg(data, tmp_path / 'cut'), on_step=kill, progress=False)
    assert latest_checkpoint(tmp_path / 'cut').name == 'checkpoint-stage2-0000002'
    fit(_cfg(data, tmp_path / 'cut'), resume=True, progress=False)
    a, b = load_file(tmp_path / 'full' / 'final' / 'model.safetensors'), load_file(tmp_path / 'cut' / 'final' / 'model.safetensors')
    assert all(torch.equal(a[k], b[k]) for k in a)

def _batch(data, proc, n=12):
    ds = LlavaDataset(data / 'stage2.json')
    return LlavaCollate(proc, 'chat')([ds[i] for i in range(n)])

def test_gradient_checkpointing_changes_nothing(data):
    grads = []
    for ckpt in (False, True):
        model, proc = tiny_mllm('llava-qwen3')
        model.requires_grad_(True); model.train()
        if ckpt: model.activation_checkpointing_enable(activation_checkpointing_kwargs=dict(use_reentrant=False))
        hm = HeraModel(model, HeraLoss(k=4), [(1, 3), (2, 0), (2, 7)], 0.01)
        b = _batch(data, proc)
        fires = []
        h = model.model.language_model.layers[2].self_attn.o_proj.register_forward_pre_hook(lambda *a: fires.append(1))
        lm, hera = hm(b, torch.randn(12, 32, generator=torch.Generator().manual_seed(0)))
        (lm + hera).backward(); h.remove()
        grads.append((lm.item(), hera.item(), len(fires), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    (lm0, h0, f0, g0), (lm1, h1, f1, g1) = grads
    assert (f0, f1) == (1, 2)                        # the hook fires again in the recomputation
    assert lm0 == pytest.approx(lm1, abs=1e-6) and h0 == pytest.approx(h1, abs=1e-6)
    for k in g0: torch.testing.assert_close(g0[k], g1[k], rtol=1e-4, atol=1e-6)

def test_lora_trains_adapters_and_projector_only(data):
    model, proc = tiny_mllm('llava-llama')
    set_trainable(model, StageConfig(train_llm='lora'), lora_r=4)
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    assert names and all('lora_' in k or 'multi_modal_projector' in k for k in names)
    assert not any('o_proj' in k for k in names)
    hm = HeraModel(model, HeraLoss(k=4), [(0, 1), (3, 2)], 0.01)
    lm, hera = hm(_batch(data, proc), torch.randn(12, 32))
    (lm + hera).backward()
    assert all(p.grad is not None for k, p in model.named_parameters() if 'lora_B' in k)

def test_layer_granularity_and_bad_config(data, tmp_path):
    s = fit(_cfg(data, tmp_path / 'layers', granularity='layer', n_heads=2), progress=False)
    assert [len(x) for x in s['selection']] == [1, 1] and math.isfinite(s['stage2']['hera'])
    with pytest.raises(ValueError, match="use 'head' or 'layer'"):
        fit(_cfg(data, tmp_path / 'bad', granularity='token'), progress=False)
    with pytest.raises(ValueError, match='Table 5 has no selection'):
        fit(_cfg(data, tmp_path / 'bad2', heads='paper'), progress=False)

def test_two_processes_gather_the_contrastive_batch(data, tmp_path):
    """torchrun, 2 CPU processes x 8 samples, k=10: HeRA needs 11 samples, so it runs only through the cross-process gather.
    Every cache write is slowed (0.7 s between writing a file and renaming it, as for a real 2 GB teacher cache): the
    processes must not race on the scoring capture or the teacher features (before the fix one crashed on a rename)."""
    import json, os, subprocess, sys, yaml
    cfg = dict(llm='tiny:llava-qwen2', teacher='tiny', output_dir=str(tmp_path / 'run'), log_with=None, log_every=1,
               probe_every=100, checkpoint_every=100, hera=dict(k=10, score_samples=64),
               stage1=dict(data=str(data / 'stage1.json'), batch_size=8, max_steps=2),
               stage2=dict(data=str(data / 'stage2.json'), template='chat', train_llm='full', batch_size=8, max_steps=2, lr=1e-4))
    (tmp_path / 'cfg.yaml').write_text(yaml.safe_dump(cfg))
    (tmp_path / 'slow.py').write_text(
        'import sys, time, safetensors.torch as st, hera_nbs.capture as c, hera_nbs.train as t, hera_nbs.cli as cli\n'
        'def slow(*a, **k):\n    st.save_file(*a, **k)\n    time.sleep(0.7)\n'
        'def slow_bytes(*a, write=t.atomic_write_bytes, **k):\n    time.sleep(0.7)\n    return write(*a, **k)\n'
        'c.save_file = t.save_file = slow\nt.atomic_write_bytes = slow_bytes\nsys.exit(cli.train())\n')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(tmp_path / 'slow.py'), str(tmp_path / 'cfg.yaml')], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / 'run'
    assert json.loads((run / 'selection.json').read_text())['heads'] == json.loads(r.stdout.strip().splitlines()[-1])['selection']
    assert len(list(run.glob('teacher-*'))) == 2 and not list(run.rglob('*.tmp*'))
    rows = [json.loads(l) for l in (tmp_path / 'run' / 'log.jsonl').read_text().splitlines() if '"lm"' in l]
    assert [(x['stage'], x['step']) for x in rows] == [('stage1', 1), ('stage1', 2), ('stage2', 1), ('stage2', 2)]  # one writer
    assert all(x['skipped'] == 0 and x['hera'] > 0 for x in rows)
    # the same config in one process would have 8 samples per contrastive batch, fewer than k+1: refused up front
    one = subprocess.run([sys.executable, '-m', 'hera_nbs.cli', 'train', str(tmp_path / 'cfg.yaml'), '--output-dir',
                          str(tmp_path / 'one')], capture_output=True, text=True, env=env, timeout=240)
    assert one.returncode == 2 and '8 x 1 processes: HeRA needs a global batch of at least k+1 = 11' in one.stderr
