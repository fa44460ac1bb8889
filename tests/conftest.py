import os, pytest, torch
from pathlib import Path
from hera_nbs.world import world_pairs, write_llava

# one thread per pytest-xdist worker (tests/run_all.sh runs two on a 2-core machine), else two
torch.set_num_threads(1 if os.environ.get('PYTEST_XDIST_WORKER') else 2)

@pytest.fixture(scope='session')
def cache(tmp_path_factory)->Path:
    "A cache root shared by the session: `$HERA_CACHE` when set (CI reuses the notebooks' cache), else a temp dir."
    return Path(os.environ.get('HERA_CACHE') or tmp_path_factory.mktemp('hera_cache'))

@pytest.fixture(scope='session')
def data(tmp_path_factory)->Path:
    "A small tiny-world dataset in LLaVA format: stage1.json (captions) and stage2.json (questions, 8 text-only)."
    d = tmp_path_factory.mktemp('world')
    write_llava(world_pairs(96, seed=1), d, stage=1)
    write_llava(world_pairs(96, seed=2), d, stage=2, text_only=8)
    return d
