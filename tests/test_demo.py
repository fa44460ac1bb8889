"`hera-demo`: deterministic for a seed, seeds that differ, the ablation variants, a JSON last line."
import json, os, subprocess, sys
import pytest
from hera_nbs.demo import DemoConfig, VARIANTS, run_demo
from hera_nbs.parts import QUICK_PARTS

def _cfg(out, **kw):
    return DemoConfig(out=str(out), parts=QUICK_PARTS, n_train=64, n_eval=8, n_probe=32, steps=(2, 3), batch_size=16, score_samples=64, **kw)

def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = run_demo(_cfg(tmp_path/'a', seeds=(0, 1)), progress=False)
    b = run_demo(_cfg(tmp_path/'b', seeds=(0,)), progress=False)
    assert a['runs']['hera']['0'] == b['runs']['hera']['0'] and a['runs']['baseline']['0'] == b['runs']['baseline']['0']
    assert a['runs']['hera']['0']['caption_ppl'] != a['runs']['hera']['1']['caption_ppl']
    sd = a['variants']['hera']['caption perplexity']['sd']
    assert sd > 0 and b['variants']['hera']['caption perplexity']['sd'] == 0

def test_cli_runs_the_ablations_and_ends_with_json(tmp_path, cache):
    r = subprocess.run([sys.executable, '-m', 'hera_nbs.cli', 'demo', '--setting', 'quick', '--ablations',
                        '--out', str(tmp_path)],
                       capture_output=True, text=True, timeout=900, env={**os.environ, 'HERA_CACHE': str(cache)})
    assert r.returncode == 0, r.stderr[-3000:]
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(last['variants']) == sorted(VARIANTS)
    runs = json.loads((tmp_path/'summary.json').read_text())['runs']
    heads = {v: runs[v]['0']['selected'] for v in VARIANTS}
    assert heads['hera'] == heads['baseline'] and heads['hera-best'] != heads['hera']     # least vs most aligned
    assert (tmp_path/'scoring-oracle'/'selection.json').exists()                           # the oracle scored its own
    oracle = json.loads((tmp_path/'hera-oracle-s0'/'config.json').read_text())
    assert oracle['teacher'].endswith('teacher-oracle') and oracle['probe_data'].endswith('held-out.json')
    for v in VARIANTS:
        row = last['variants'][v]
        assert 0 <= row['vision-centric accuracy']['mean'] <= 1
        assert set(row) >= {'POPE F1 adversarial', 'MKNN mm, selected: stage 2', 'MKNN text, selected: stage 2'}

def test_bad_config_is_refused():
    with pytest.raises(ValueError, match='choose one or more of'): DemoConfig(variants=('hera', 'bogus'))
