"""The tiny world as LLaVA files, offline: the scenes `hera-demo` trains on, for `hera-train` or any LLaVA trainer.

    python data_recipes/tiny_world.py --out data/tiny_world [--n-train 1024] [--seed 0]

Writes `OUT/world/stage1.json` (captions of scenes drawn with the co-occurrence prior), `OUT/world/stage2.json`
(questions about other such scenes, plus a few text-only samples) and `OUT/world/images/`, exactly as the demo
does (`hera_nbs.demo.write_world`); held-out scenes are drawn on the fly at evaluation (`hera_nbs.eval`).
"""
import argparse, sys
from pathlib import Path
from _common import report
from hera_nbs.demo import write_world

def write(out:Path, n_train:int=1024, seed:int=0)->Path:
    "Write both stages under `out/world`; return the folder."
    write_world(out, n_train, world_seed=seed)
    return Path(out)/'world'

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', type=Path, default=Path('data/tiny_world'))
    p.add_argument('--n-train', type=int, default=1024); p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    world = write(a.out, a.n_train, a.seed)
    ok = [report(world/f'stage{i}.json', world, template=t) for i, t in ((1, 'plain'), (2, 'chat'))]
    sys.exit(0 if all(ok) else 1)
