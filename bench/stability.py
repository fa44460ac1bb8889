"""Can a head ranking be trusted? Stability of the selected heads and permutation-calibrated scores (issue 16).

For one LLM (`world`: the tiny parts' LM; `smollm2`: SmolLM2-135M-Instruct, offline) it scores `--n` distinct world
captions against the tiny world's self-supervised teacher with `score_and_select`, whose summary carries the
bootstrap and k/2, 2k stability of the selection (`selection_stability`); then the selection on the first 250, 500
and 1000 samples (`sample_size_stability`: neighbourhoods recomputed on the smaller pool), and the permutation-
calibrated scores of every head (`calibrated_scores`, as the `calibrated-similarity` package computes them).
The last line printed is one JSON object, also written to `bench/results/stability-<llm>.json`.

    python bench/stability.py --llm world|smollm2 [--n 1000] [--threads 2]
"""
import argparse, json, time
from pathlib import Path
import torch
from hera_nbs.capture import CaptureStore
from hera_nbs.load import load_llm, load_teacher, set_threads
from hera_nbs.mknn import NeighbourCache, calibrated_scores
from hera_nbs.select import sample_size_stability, score_and_select
from hera_nbs.world import world_pairs

def main(llm:str, n:int, out:Path)->dict:
    t0, k = time.time(), 10
    model, tok = load_llm(llm, 'cpu')
    s = score_and_select(model, tok, load_teacher('world'), world_pairs(n, seed=0, distinct=True), out, k=k, n=5)
    store = CaptureStore(out/'capture')
    heads, teacher = store.heads(), store.teacher()
    sizes = sample_size_stability(heads, teacher, (250, 500, 1000), k=k)
    cal = calibrated_scores(NeighbourCache(heads, teacher, k), k, n_perm=200)
    chosen = [tuple(h) for h in s['selected']]
    return dict(llm=llm, n_samples=s['n_samples'], k=k, chance=s['chance'], selected=s['selected'],
                selected_mknn=s['selected_mknn'], stability=s['stability'],
                pool_size={str(m): dict(mean_head_mknn=round(v[0], 4), selection_kept=v[1], kendall=round(v[2], 3))
                           for m, v in sizes.items()},
                heads_above_chance_p05=int((cal['p'] < 0.05).sum()), heads=int(cal['p'].numel()),
                selected_p=[round(cal['p'][h].item(), 4) for h in chosen],
                selected_calibrated=[round(cal['calibrated'][h].item(), 4) for h in chosen],
                selected_z=[round(cal['z'][h].item(), 2) for h in chosen], seconds=round(time.time() - t0, 1),
                threads=torch.get_num_threads())

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--llm', default='world', help='world (the tiny parts LM) or smollm2')
    p.add_argument('--n', type=int, default=1000, help='distinct world captions')
    p.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch\'s own)')
    a = p.parse_args()
    set_threads(a.threads)
    res = main(a.llm, a.n, Path('runs')/f'stability-{a.llm}')
    results = Path(__file__).parent/'results'
    (results/f'stability-{a.llm}.json').write_text(json.dumps(res, indent=1) + '\n')
    print(json.dumps(res))
