"""kill -9 during a capture, during a checkpoint write and during `hera-demo`; the same command again resumes, reads
nothing half-written, and ends with exactly what an uninterrupted run gives (issue 15). Real processes, real
SIGKILL: `kill_at.py` kills the command right after the n-th call of a writer, before its caller finishes."""
import json, os, signal, subprocess, sys
from pathlib import Path

import pytest, torch
from safetensors.torch import load_file

BIN, KILL_AT = Path(sys.executable).parent, Path(__file__).parent/'kill_at.py'

def _env(cache:Path)->dict: return {**os.environ, 'HERA_CACHE': str(cache), 'OMP_NUM_THREADS': '1'}

def command(cache:Path, cwd:Path, name:str, *args)->subprocess.CompletedProcess:
    "A console script, to the end."
    r = subprocess.run([str(BIN/f'hera-{name}'), *map(str, args)], capture_output=True, text=True, env=_env(cache),
                       cwd=cwd, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r

def killed(cache:Path, cwd:Path, writer:str, n:int, name:str, *args):
    "The same command, SIGKILLed right after the n-th call of `writer`."
    r = subprocess.run([sys.executable, str(KILL_AT), writer, str(n), name, *map(str, args)], capture_output=True,
                       text=True, env=_env(cache), cwd=cwd, timeout=900)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-3000:])

def test_kill_during_capture_then_rerun_resumes(cache, tmp_path):
    args = ['--n-samples', 96, '--batch-size', 2, '--k', 5]           # shards of 32 samples: 3 of them
    command(cache, tmp_path, 'score', *args, '--out', 'ref')
    # atomic_write_bytes: the head factors, then one call per shard; call 3 writes shard 2, the kill comes before the
    # manifest names it (a write killed half way leaves a temporary file: chapter 06 checks that resuming clears it)
    killed(cache, tmp_path, 'hera_nbs.capture.atomic_write_bytes', 3, 'score', *args, '--out', 'cut')
    manifest = json.loads((tmp_path/'cut'/'capture'/'manifest.json').read_text())
    assert not manifest['complete'] and len(manifest['shards']) == 1                          # shard 1 is whole
    command(cache, tmp_path, 'score', *args, '--out', 'cut')
    for f in ('scores.json', 'selection.json'):
        assert json.loads((tmp_path/'cut'/f).read_text()) == json.loads((tmp_path/'ref'/f).read_text()), f
    assert (tmp_path/'cut'/'capture'/'shard-00001.safetensors').exists() and not list(
        (tmp_path/'cut'/'capture').glob('.*tmp*'))                      # shard 2 written again, nothing left aside

TRAIN = """llm: tiny:llava-qwen2
teacher: tiny
log_with: null
checkpoint_every: 1
log_every: 1
probe_every: 2
probe_samples: 32
hera: {{lambda_hera: 0.01, score_samples: 48}}
stage1: {{data: {d}/stage1.json, batch_size: 16, max_steps: 2}}
stage2: {{data: {d}/stage2.json, template: chat, train_llm: full, batch_size: 16, max_steps: 2, lr: 1.0e-4}}
"""

def test_kill_during_a_checkpoint_write_then_resume_is_exact(cache, data, tmp_path):
    (tmp_path/'run.yaml').write_text(TRAIN.format(d=data))
    command(cache, tmp_path, 'train', 'run.yaml', '--output-dir', 'ref')
    # save_file: the stage's teacher features, then 3 per checkpoint (weights, optimizer, rng): call 5 is the
    # weights of stage 1's 2nd checkpoint, written into its temporary folder
    killed(cache, tmp_path, 'hera_nbs.train.save_file', 5, 'train', 'run.yaml', '--output-dir', 'cut')
    assert [p.name[:26] for p in (tmp_path/'cut').glob('.checkpoint-*')] == ['.checkpoint-stage1-0000002']
    assert sorted(p.name for p in (tmp_path/'cut').glob('checkpoint-*')) == ['checkpoint-stage1-0000001']
    r = command(cache, tmp_path, 'train', 'run.yaml', '--output-dir', 'cut', '--resume')
    assert 'resuming cut from checkpoint-stage1-0000001 (stage1, step 1)' in r.stderr
    ref, cut = (load_file(tmp_path/d/'final'/'model.safetensors') for d in ('ref', 'cut'))
    assert ref.keys() == cut.keys() and all(torch.equal(ref[k], cut[k]) for k in ref)
    assert (tmp_path/'cut'/'log.jsonl').read_text() == (tmp_path/'ref'/'log.jsonl').read_text()
    assert not [p for p in (tmp_path/'cut').iterdir() if '.tmp-' in p.name]   # the half checkpoint was never kept

DEMO = ['--setting', 'quick', '--checkpoint-every', 1]

@pytest.fixture(scope='module')
def demo_ref(cache, tmp_path_factory)->tuple[Path, dict]:
    "The quick demo, uninterrupted, its runs one after the other: its folder and last JSON line."
    d = tmp_path_factory.mktemp('demo')
    return d/'ref', json.loads(command(cache, d, 'demo', *DEMO, '--jobs', 1, '--out', 'ref').stdout.splitlines()[-1])

def test_kill_during_the_demo_then_rerun_resumes(cache, tmp_path, demo_ref):
    args, ref = [*DEMO, '--jobs', 1], demo_ref[1]
    # the baseline writes 5 checkpoints (2 + 3 steps); HeRA's 3rd is call 8: killed in stage 2, after its step 1
    killed(cache, tmp_path, 'hera_nbs.train.save_checkpoint', 8, 'demo', *args, '--out', 'cut')
    baseline = (tmp_path/'cut'/'baseline-s0'/'results.json').stat().st_mtime_ns
    r = command(cache, tmp_path, 'demo', *args, '--out', 'cut')
    assert 'resuming cut/hera-s0 from checkpoint-stage2-0000001 (stage2, step 1)' in r.stderr
    assert (tmp_path/'cut'/'baseline-s0'/'results.json').stat().st_mtime_ns == baseline    # not trained again
    assert json.loads(r.stdout.splitlines()[-1])['variants'] == ref['variants']
    runs = [json.loads((d/'summary.json').read_text())['runs'] for d in (demo_ref[0], tmp_path/'cut')]
    assert runs[0] == runs[1]

def test_a_run_process_killed_in_the_side_by_side_demo_goes_on_from_its_checkpoint(cache, tmp_path, demo_ref):
    # --jobs 2: baseline and HeRA train in two worker processes; each dies right after its 3rd checkpoint (stage 2,
    # step 1) and the demo itself goes on with both runs here, from those checkpoints, to the uninterrupted figures
    r = subprocess.run([sys.executable, str(KILL_AT), '--in-workers', 'hera_nbs.train.save_checkpoint', '3', 'demo',
                        *map(str, DEMO), '--jobs', '2', '--out', 'cut'], capture_output=True, text=True,
                       env=_env(cache), cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "a run's process died" in r.stderr and 'from checkpoint-stage' in r.stderr, r.stderr[-3000:]
    assert json.loads(r.stdout.splitlines()[-1])['variants'] == demo_ref[1]['variants']
    runs = [json.loads((d/'summary.json').read_text())['runs'] for d in (demo_ref[0], tmp_path/'cut')]
    assert runs[0] == runs[1]
