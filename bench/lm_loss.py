"""Benchmark: the LM loss from the target positions' logits (`lm_loss`) against the model's own `.loss` (logits at
every position) and against transformers' `logits_to_keep` given the positions where any row has a target (the
strongest simple alternative that any transformers 5 takes).

Two cases: the tiny LLaVA on a stage-2 batch of the tiny world (what the demo trains), and a LLaVA-shaped sequence
on a causal LM with Qwen2.5's vocabulary (151,936): 576 image positions and a prompt without targets, then an
answer whose length and place differ per row. Each measure runs forward and backward; all three in turn in one
process, `--reps` times, and the median is reported, with the loss and the gradients' largest difference against
`.loss`. On a GPU, each measure's peak allocated memory too (bf16 autocast, as training runs). The last line
printed is one JSON object.

    python bench/lm_loss.py [--reps 5] [--threads 1] [--width 256] [--batch 4]
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hera_nbs.train import lm_loss  # noqa: E402

def union_loss(model, inputs:dict)->torch.Tensor:
    "`logits_to_keep` at the positions where any row has a target: the same positions for every row."
    targets = inputs['labels'][:, 1:]
    keep = (targets != -100).any(0).nonzero().squeeze(1)
    out = model(**{k: v for k, v in inputs.items() if k != 'labels'}, logits_to_keep=keep, use_cache=False)
    return torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), targets[:, keep].flatten(),
                                             ignore_index=-100)

def full_loss(model, inputs:dict)->torch.Tensor:
    "The model's own `.loss`: logits at every position."
    return model(**inputs, use_cache=False).loss

WAYS = dict(model_loss=full_loss, logits_to_keep=union_loss, lm_loss=lm_loss)

def tiny_case(dev:str)->tuple:
    "The tiny LLaVA and a 32-sample stage-2 batch of the tiny world."
    from hera_nbs.data import LlavaCollate, LlavaDataset
    from hera_nbs.models import tiny_mllm
    from hera_nbs.world import world_pairs, write_llava
    model, proc = tiny_mllm('llava-qwen2')
    with tempfile.TemporaryDirectory() as d:
        write_llava(world_pairs(32, seed=1), d, stage=2)
        batch = LlavaCollate(proc, 'chat')([s for s in LlavaDataset(Path(d)/'stage2.json')])
    keys = ('input_ids', 'attention_mask', 'labels', 'pixel_values')
    return model.to(dev), {k: batch[k].to(dev) for k in keys}

def vocab_case(dev:str, width:int, batch:int)->tuple:
    "A 2-layer causal LM with Qwen2.5's vocabulary; 576 image and 40 prompt positions, then answers of 60-200 tokens."
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(vocab_size=151936, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                      num_attention_heads=max(1, width // 64), num_key_value_heads=max(1, width // 128))
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    g = torch.Generator().manual_seed(0)
    answers = torch.randint(60, 201, (batch,), generator=g)
    L = 616 + int(answers.max())
    ids = torch.randint(0, cfg.vocab_size, (batch, L), generator=g)
    mask = torch.arange(L)[None] < (616 + answers)[:, None]
    labels = ids.masked_fill(~mask, -100)
    labels[:, :616] = -100
    return model.to(dev), dict(input_ids=ids.to(dev), attention_mask=mask.long().to(dev), labels=labels.to(dev))

def measure(model, inputs:dict, dev:str, reps:int)->dict:
    "Median seconds (and peak MiB on a GPU) of forward + backward for each way; differences against `.loss`."
    model.train()
    autocast = torch.autocast('cuda', dtype=torch.bfloat16, enabled=dev == 'cuda')
    def run(way):
        model.zero_grad(set_to_none=True)
        with autocast: loss = WAYS[way](model, inputs)
        loss.backward()
        if dev == 'cuda': torch.cuda.synchronize()
        return loss.detach().float(), torch.cat([p.grad.float().flatten() for p in model.parameters()
                                                 if p.grad is not None])
    ref_loss, ref_grad = run('model_loss')
    times, peaks, diffs = {w: [] for w in WAYS}, {}, {}
    for w in WAYS:
        loss, grad = run(w)
        diffs[w] = dict(loss=abs(loss - ref_loss).item(), grad=(grad - ref_grad).abs().max().item())
    del ref_grad, grad
    for _ in range(reps):
        for w in WAYS:
            if dev == 'cuda':
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            run(w)
            times[w].append(time.perf_counter() - t)
            if dev == 'cuda': peaks[w] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    med = {w: statistics.median(t) for w, t in times.items()}
    out = dict(ms={w: round(s * 1e3, 2) for w, s in med.items()},
               speedup_vs_model_loss=round(med['model_loss'] / med['lm_loss'], 3),
               speedup_vs_logits_to_keep=round(med['logits_to_keep'] / med['lm_loss'], 3),
               targets=int((inputs['labels'][:, 1:] != -100).sum()), positions=int(inputs['labels'][:, 1:].numel()),
               max_abs_diff=diffs)
    if peaks: out['peak_mib'] = peaks
    return out

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--width', type=int, default=256, help='hidden size of the vocabulary case')
    p.add_argument('--batch', type=int, default=4, help='rows of the vocabulary case')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    res = dict(device=torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu', threads=a.threads, reps=a.reps)
    res['tiny_llava'] = measure(*tiny_case(dev), dev, a.reps)
    print('tiny_llava', res['tiny_llava'], flush=True)
    res['qwen2.5_vocabulary'] = dict(width=a.width, batch=a.batch, **measure(*vocab_case(dev, a.width, a.batch), dev,
                                                                           a.reps))
    print('qwen2.5_vocabulary', res['qwen2.5_vocabulary'], flush=True)
    print(json.dumps(res))
