import os, pytest, torch
from pathlib import Path

torch.set_num_threads(2)

@pytest.fixture(scope='session')
def cache(tmp_path_factory)->Path:
    "A cache root shared by the session: `$HERA_CACHE` when set (CI reuses the notebooks' cache), else a temp dir."
    return Path(os.environ.get('HERA_CACHE') or tmp_path_factory.mktemp('hera_cache'))
