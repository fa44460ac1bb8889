"""Every bad input a user has tried: the exit status, a message that names the problem, and never a traceback
(issue 15). One row per input, each test checks one row. Every row runs in this process through the entry point its
console script calls (`hera_nbs.cli.score` for `hera-score`, ...): a new process spends ~7 s importing torch and
transformers, which made the table the slowest file of the suite. `REAL` rows, one or more per command, run through
the installed console scripts too, two processes at a time, and must give the same answer."""
import contextlib, io, json, os, subprocess, sys, traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import pytest
from PIL import Image

import torch
from hera_nbs import cli
from hera_nbs.demo import QUICK_DEMO, DemoConfig
from hera_nbs.parts import QUICK_PARTS
from hera_nbs.store import write_json
from hera_nbs.train import HeraConfig, StageConfig, TrainConfig
from hera_nbs.world import world_pairs, write_llava

BIN = Path(sys.executable).parent
TINY = "llm: tiny:llava-qwen2\nteacher: tiny\nlog_with: null\n"
STAGE = "{{data: {d}/world/stage1.json, batch_size: 16, max_steps: 1}}"

# id, command, extra environment, expected exit status, a fragment the message must hold
CASES = [
    ('score-missing-data', 'hera-score --data {d}/missing.json', {}, 2, 'missing.json: no such file'),
    ('score-json-dict', 'hera-score --data {d}/dict.json', {}, 2, 'holds a JSON dict, not a list'),
    ('score-json-strings', 'hera-score --data {d}/strs.json', {}, 2, 'sample 0 is a str'),
    ('score-empty-list', 'hera-score --data {d}/empty.json', {}, 2, 'is an empty list'),
    ('score-not-json', 'hera-score --data {d}/garbled.json', {}, 2, 'is not JSON'),
    ('score-text-only', 'hera-score --data {d}/text.json', {}, 2, 'has no sample with an image'),
    ('score-n-samples-0', 'hera-score --n-samples 0', {}, 2, '--n-samples 0: score at least 21'),
    ('score-k-too-large', 'hera-score --data {d}/twelve/stage1.json --k 11', {}, 2, 'chance MKNN is 1.00'),
    ('score-k-0', 'hera-score --k 0', {}, 2, 'k=0: MKNN needs at least 1'),
    ('score-n-0', 'hera-score --n 0', {}, 2, '--n 0'),
    ('score-path-escape', 'hera-score --data {d}/escape.json', {}, 2, 'leaves the image folder'),
    ('score-missing-image', 'hera-score --data {d}/gone.json', {}, 2, '1 of 12 images do not exist'),
    ('score-zero-byte-image', 'hera-score --data {d}/zero.json --k 2', {}, 2, 'zero.png does not decode'),
    ('score-text-as-image', 'hera-score --data {d}/text_image.json --k 2', {}, 2, 'notes.png does not decode'),
    ('score-unknown-model', 'hera-score --model qwen-7b', {}, 2, "llm 'qwen-7b' is not a short name"),
    ('score-unknown-teacher', 'hera-score --teacher dino', {}, 2, "teacher 'dino' is not a short name"),
    ('score-missing-folder', 'hera-score --model ./nowhere/llm', {}, 2, "'./nowhere/llm': no such folder"),
    ('score-data-before-model', 'hera-score --model qwen-7b --data {d}/missing.json', {}, 2, 'no such file'),
    ('score-bad-mode', 'hera-score --mode wrost', {}, 2, "invalid choice: 'wrost'"),
    ('score-threads-0', 'hera-score --threads 0', {}, 2, 'threads = 0'),
    ('score-threads-env', 'hera-score --n-samples 32 --k 3', {'HERA_THREADS': 'abc'}, 2, "HERA_THREADS='abc'"),
    ('score-stale-out', 'hera-score --n-samples 24 --k 3 --seed 1 --out {d}/used_score', {}, 2,
     'holds a capture made with a different'),
    ('score-n-samples-equals', 'hera-score --n-samples=24 --k 3 --out {d}/s24', {}, 0, '24 samples of the tiny world'),
    ('score-n-samples-abbrev', 'hera-score --n-sam 24 --k 3 --out {d}/s24b', {}, 0, '24 samples of the tiny world'),
    ('train-missing-config', 'hera-train {d}/none.yaml', {}, 2, 'none.yaml: no such file'),
    ('train-not-yaml', 'hera-train {d}/cfg/not_yaml.yaml', {}, 2, 'is not YAML'),
    ('train-yaml-list', 'hera-train {d}/cfg/list.yaml', {}, 2, 'holds a YAML list'),
    ('train-negative-lambda', 'hera-train {d}/cfg/negative.yaml', {}, 2, 'lambda_hera = -0.5'),
    ('train-batch-0', 'hera-train {d}/cfg/batch0.yaml', {}, 2, 'batch_size = 0'),
    ('train-lr-string', 'hera-train {d}/cfg/lr_text.yaml', {}, 2, 'write 1.0e-3'),
    ('train-unknown-field', 'hera-train {d}/cfg/unknown.yaml', {}, 2, "unknown fields ['lamda_hera']"),
    ('train-no-stage', 'hera-train {d}/cfg/nostage.yaml', {}, 2, 'the config has no stage'),
    ('train-missing-data', 'hera-train {d}/cfg/missing_data.yaml', {}, 2, 'absent.json: no such file'),
    ('train-no-image-samples', 'hera-train {d}/cfg/text_only.yaml', {}, 2, 'has no sample with an image'),
    ('train-batch-below-k', 'hera-train {d}/cfg/small_batch.yaml', {}, 2, 'global batch of at least k+1 = 11'),
    ('train-missing-selection', 'hera-train {d}/cfg/no_selection.yaml', {}, 2, 'no such selection file'),
    ('train-other-config', 'hera-train {d}/cfg/ok.yaml --output-dir {d}/other_run', {}, 2,
     'holds a run with another config (hera.lambda_hera: 0.5 -> 0.0)'),
    ('train-used-folder', 'hera-train {d}/cfg/ok.yaml --output-dir {d}/same_run', {}, 2, 'pass --resume'),
    ('train-resume-nothing', 'hera-train {d}/cfg/ok.yaml --output-dir {d}/fresh_run --resume', {}, 0,
     'nothing to resume in'),
    ('demo-other-config', 'hera-demo --setting quick --out {d}/demo --lambda-hera 0.5', {}, 2,
     'holds a demo with another configuration (lambda_hera: 0.01 -> 0.5)'),
    ('demo-negative-lambda', 'hera-demo --lambda-hera -1', {}, 2, 'lambda_hera = -1.0'),
    ('demo-small-batch', 'hera-demo --batch-size 4', {}, 2, 'HeRA needs at least k+1 = 11'),
    ('demo-bad-variant', 'hera-demo --variants hera-worst', {}, 2, "variants ['hera-worst']"),
    ('data-empty-list', 'hera-data check {d}/empty.json', {}, 2, 'is an empty list'),
    ('data-missing', 'hera-data check {d}/missing.json', {}, 2, 'no such file'),
    ('data-path-escape', 'hera-data check {d}/escape.json', {}, 1, 'outside image folder: 1'),
    ('data-no-command', 'hera-data', {}, 2, 'usage: hera-data'),
]

def _files(d:Path):
    "Every bad input of the table, under `d`."
    write_llava(world_pairs(12, seed=5), d/'twelve', stage=1)
    write_llava(world_pairs(32, seed=6), d/'world', stage=1)
    good = json.loads((d/'twelve'/'stage1.json').read_text())
    for s in good: s['image'] = f'twelve/{s["image"]}'
    for name, text in [('dict.json', '{"id": 1}'), ('strs.json', '["a", "b"]'), ('empty.json', '[]'),
                       ('garbled.json', '[{"id": ')]:
        (d/name).write_text(text)
    text_only = [dict(s, image=None) for s in good]
    (d/'zero.png').write_bytes(b'')
    (d/'notes.png').write_text('not an image')
    for name, i, image in [('escape', 0, '../../../etc/passwd'), ('gone', 0, 'gone.png'), ('zero', 5, 'zero.png'),
                           ('text_image', 5, 'notes.png')]:
        (d/f'{name}.json').write_text(json.dumps([dict(s, image=image) if j == i else s for j, s in enumerate(good)]))
    (d/'text.json').write_text(json.dumps(text_only))
    _configs(d/'cfg', d)
    ok = TrainConfig(llm='tiny:llava-qwen2', teacher='tiny', log_with=None,
                     hera=HeraConfig(lambda_hera=0.0, score_samples=32),
                     stage1=StageConfig(data=f'{d}/world/stage1.json', batch_size=16, max_steps=1))
    other = TrainConfig(**{**vars(ok), 'hera': HeraConfig(lambda_hera=0.5, score_samples=32)})
    write_json(d/'other_run'/'config.json', asdict(other))
    write_json(d/'same_run'/'config.json', asdict(ok))
    write_json(d/'demo'/'demo.json', asdict(DemoConfig(out=str(d/'demo'), parts=QUICK_PARTS, **QUICK_DEMO)))
    subprocess.run([BIN/'hera-score', '--n-samples', '24', '--k', '3', '--out', d/'used_score'], check=True,
                   capture_output=True)

def _configs(c:Path, d:Path):
    "The YAML configs of the table."
    stage = STAGE.format(d=d)
    c.mkdir()
    for name, text in [
            ('not_yaml', 'stage1: [\n'), ('list', '- 1\n- 2\n'),
            ('negative', f'{TINY}hera: {{lambda_hera: -0.5}}\nstage1: {stage}\n'),
            ('batch0', f'{TINY}stage1: {{data: {d}/world/stage1.json, batch_size: 0}}\n'),
            ('lr_text', f'{TINY}stage1: {{data: {d}/world/stage1.json, lr: 1e-3}}\n'),
            ('unknown', f'{TINY}hera: {{lamda_hera: 0.1}}\nstage1: {stage}\n'), ('nostage', TINY),
            ('missing_data', f'{TINY}stage1: {{data: {d}/absent.json}}\n'),
            ('text_only', f'{TINY}stage1: {{data: {d}/text.json}}\n'),
            ('small_batch', f'{TINY}stage1: {{data: {d}/world/stage1.json, batch_size: 4}}\n'),
            ('no_selection', f'{TINY}hera: {{heads: {d}/sel.json}}\nstage1: {stage}\n'),
            ('ok', f'{TINY}hera: {{lambda_hera: 0.0, score_samples: 32}}\nstage1: {stage}\n')]:
        (c/f'{name}.yaml').write_text(text)

REAL = {'score-missing-data', 'score-threads-env', 'score-n-samples-equals', 'train-negative-lambda',
        'demo-bad-variant', 'data-path-escape', 'data-no-command'}
ENTRY = {'hera-score': cli.score, 'hera-train': cli.train, 'hera-demo': cli.demo, 'hera-data': cli.data}

def _here(case, d:Path, cache:Path)->subprocess.CompletedProcess:
    "One row through its console script's entry point, in this process: its folder, environment, output and status."
    name, command, env, _, _ = case
    argv, cwd = command.format(d=d).split(), d/'here'/name
    cwd.mkdir(parents=True, exist_ok=True)
    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    threads, here = torch.get_num_threads(), os.getcwd()
    os.environ.update({'HERA_CACHE': str(cache), **env})
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: status = ENTRY[argv[0]](argv[1:])
            except SystemExit as e: status = e.code if isinstance(e.code, int) else 1       # argparse: 2
            except Exception:                                                      # as Python would print it
                err.write(traceback.format_exc())
                status = 1
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())

def _run(case, d:Path, cache:Path)->subprocess.CompletedProcess:
    "One row's command, in a folder of its own (default output folders never collide)."
    name, command, env, _, _ = case
    argv, cwd = command.format(d=d).split(), d/'rows'/name
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, 'HERA_CACHE': str(cache), 'OMP_NUM_THREADS': '1', **env}
    return subprocess.run([str(BIN/argv[0]), *argv[1:]], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)

@pytest.fixture(scope='module')
def results(tmp_path_factory, cache)->dict:
    "Every row in this process; the `REAL` rows through their console scripts as well, two processes at a time."
    d = tmp_path_factory.mktemp('bad')
    _files(d)
    real = [c for c in CASES if c[0] in REAL]
    with ThreadPoolExecutor(2) as pool:
        done = pool.map(_run, real, [d] * len(real), [cache] * len(real))
        scripts = {case[0]: r for case, r in zip(real, done)}
    return {case[0]: _here(case, d, cache) for case in CASES}, scripts

def _check(r:subprocess.CompletedProcess, status:int, says:str):
    assert 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert r.returncode == status, (r.returncode, r.stderr[-2000:])
    if status == 2: assert says in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]   # one message, last
    else: assert says in r.stdout + r.stderr, (r.stdout[-2000:], r.stderr[-2000:])

@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_answer(case, results):
    name, _, _, status, says = case
    _check(results[0][name], status, says)
    if name in REAL: _check(results[1][name], status, says)

def test_every_command_is_checked_through_its_console_script():
    assert REAL <= {c[0] for c in CASES}
    assert {c[1].split()[0] for c in CASES if c[0] in REAL} == set(ENTRY)

def test_debug_shows_the_traceback_of_a_bad_input(tmp_path, cache):
    for flag, env in [(['--debug'], {}), ([], {'HERA_DEBUG': '1'})]:
        r = _run(('debug', 'hera-score --data {d}/missing.json ' + ' '.join(flag), env, 1, ''), tmp_path, cache)
        assert r.returncode == 1 and 'Traceback' in r.stderr and 'BadInput: ' in r.stderr, r.stderr[-2000:]
