"""Executed outputs for the chapters a reader opens first, so they read on GitHub and Colab before anything runs.

`python .ci/outputs.py` runs those notebooks on the CPU (tiny offline defaults; `#| gpu` cells skipped) and saves
their outputs: text, tables and figures, never widget state or progress bars. Each notebook is stamped with a
hash of its code and of the library's; `python .ci/outputs.py --check` (and `tests/test_notebooks.py`) fails when
a saved output no longer matches the code that made it."""
import hashlib, json, os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ['index.ipynb', '00_start_here.ipynb', '06_capture.ipynb', '08_neighbourhoods.ipynb', '09_select.ipynb']
KEEP = ('text/plain', 'text/markdown', 'text/html', 'image/png', 'image/svg+xml')
PROGRESS = re.compile(r'\r|\d+%\|')

def code_hash(nb_path:Path)->str:
    "Hash of a notebook's code cells and of the library's source (`hera_nbs/*.py`, `_modidx.py` aside)."
    h = hashlib.sha256()
    for c in json.loads(nb_path.read_text())['cells']:
        if c['cell_type'] == 'code': h.update(''.join(c['source']).encode())
    for f in sorted((ROOT/'hera_nbs').glob('*.py')):
        if f.name != '_modidx.py': h.update(f.read_bytes())
    return h.hexdigest()[:16]

def _gpu(cell)->bool: return cell.cell_type == 'code' and bool(re.match(r'\s*#\|\s*gpu', cell.source))

def _small_png(b64:str, width:int=1000)->str:
    "A figure re-encoded for the repository: at most `width` pixels wide, 256 colours."
    import base64, io
    from PIL import Image
    img = Image.open(io.BytesIO(base64.b64decode(b64))).convert('RGB')
    if img.width > width: img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    buf = io.BytesIO()
    img.quantize(256).save(buf, format='PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode()

def _static(outputs:list)->list:
    "The outputs a static page can show: no widget views, no progress bars, no execution counts."
    kept = []
    for o in outputs:
        if o.get('output_type') == 'stream':
            if o.get('name') == 'stderr' or PROGRESS.search(''.join(o.get('text', ''))): continue
            kept.append(dict(name=o['name'], output_type='stream', text=o['text']))
        elif o.get('output_type') in ('display_data', 'execute_result'):
            data = {k: v for k, v in o.get('data', {}).items() if k in KEEP}
            if 'application/vnd.jupyter.widget-view+json' in o.get('data', {}): continue
            if 'image/png' in data: data['image/png'] = _small_png(data['image/png'])
            if data: kept.append(dict(output_type='display_data', data=data, metadata={}))
        elif o.get('output_type') == 'error': raise RuntimeError(f"a cell failed: {o.get('ename')}: {o.get('evalue')}")
    return kept

def refresh(name:str):
    "Run one notebook and save its static outputs and stamp."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    path = ROOT/'nbs'/name
    nb = read_nb(path)
    shell, here = CaptureShell(), os.getcwd()
    os.chdir(path.parent)                                            # as Jupyter runs it: relative paths from nbs/
    try: shell.run_all(nb, exc_stop=True, preproc=_gpu)
    finally: os.chdir(here)
    raw = json.loads(path.read_text())
    for cell, ran in zip(raw['cells'], nb.cells):
        if cell['cell_type'] == 'code':
            cell['outputs'] = _static(ran.get('outputs', []))
            cell['execution_count'] = None
    raw['metadata']['hera_outputs'] = dict(code=code_hash(path))
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + '\n')
    tmp.replace(path)
    from nbdev.clean import nbdev_clean
    nbdev_clean(fname=str(path))                                     # the repository's notebook format
    print(f'{name}: {sum(len(c.get("outputs", [])) for c in raw["cells"])} outputs', file=sys.stderr)

def stale()->list[str]:
    "The executed notebooks whose saved outputs were made by other code."
    bad = []
    for name in EXECUTED:
        path = ROOT/'nbs'/name
        stamp = json.loads(path.read_text())['metadata'].get('hera_outputs', {}).get('code')
        if stamp != code_hash(path): bad.append(name)
    return bad

if __name__ == '__main__':
    if '--check' in sys.argv:
        if bad := stale(): sys.exit(f'saved outputs of {bad} do not match their code: run `python .ci/outputs.py`')
    else:
        os.environ.setdefault('OMP_NUM_THREADS', '1')
        os.environ.setdefault('DS_ACCELERATOR', 'cpu')   # with deepspeed installed, accelerate imports it: no log line
        for name in (sys.argv[1:] or EXECUTED): refresh(name)
