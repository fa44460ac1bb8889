"""The shape of the notebooks and the library: one hidden Colab preamble, chapters in dependency order, modules that
import with torch alone, lines a reader can scan."""
import ast, io, json, re, subprocess, sys, tokenize
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted((ROOT/'nbs').glob('*.ipynb'))

def cells(p:Path)->list[dict]: return json.loads(p.read_text())['cells']
def source(c:dict)->str: return ''.join(c['source'])

def test_every_chapter_has_the_same_hidden_colab_preamble():
    found = {}
    for p in NBS:
        if p.name == 'index.ipynb': continue
        pre = [c for c in cells(p) if c['cell_type'] == 'code' and '# In Colab' in source(c)]
        assert len(pre) == 1, f'{p.name}: {len(pre)} Colab preambles'
        assert pre[0]['metadata'].get('jupyter', {}).get('source_hidden') is True, f'{p.name}: preamble not hidden'
        found.setdefault(source(pre[0]), []).append(p.name)
    assert len(found) == 1, f'the preambles differ: {[sorted(v) for v in found.values()]}'

def _exports()->dict[str, tuple[int, set]]:
    "module -> (chapter number, the hera_nbs modules it imports)."
    out = {}
    for p in NBS:
        m = re.match(r'(\d+)_', p.name)
        if not m: continue
        mod = next((re.search(r'#\|\s*default_exp\s+(\S+)', source(c)).group(1) for c in cells(p)
                    if re.search(r'#\|\s*default_exp', source(c))), None)
        if mod is None: continue
        lib = (ROOT/'hera_nbs'/f'{mod}.py').read_text()
        deps = {n.module.split('.')[-1] for n in ast.walk(ast.parse(lib))
                if isinstance(n, ast.ImportFrom) and n.module and (n.module.startswith('hera_nbs.') or n.level)}
        out[mod] = (int(m.group(1)), deps)
    return out

def test_chapters_come_after_everything_they_import():
    ex = _exports()
    for mod, (num, deps) in ex.items():
        late = [d for d in deps if d in ex and ex[d][0] >= num]
        assert not late, f'{mod} (chapter {num:02d}) imports {late}, which come later'

@pytest.mark.parametrize('mod', ['mknn', 'loss'])
def test_metric_and_loss_import_with_torch_alone(mod):
    code = ('import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n'
            "        if name.split('.')[0] in ('transformers', 'accelerate', 'safetensors', 'matplotlib', 'PIL'):\n"
            "            raise ImportError(f'{name} is blocked')\n"
            f'sys.meta_path.insert(0, Block())\nimport hera_nbs.{mod}\n'
            "print(sorted(m for m in sys.modules if m.startswith('hera_nbs')))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    loaded = set(eval(r.stdout)) - {'hera_nbs', 'hera_nbs.store'}       # store: the standard library only
    assert loaded in ({f'hera_nbs.{mod}'}, {'hera_nbs.loss', 'hera_nbs.mknn'}), loaded

def test_library_lines_are_short_and_unchained():
    long, chained = [], []
    for f in sorted((ROOT/'hera_nbs').glob('*.py')):
        if f.name == '_modidx.py': continue
        text = f.read_text()
        for n, l in enumerate(text.splitlines(), 1):
            if len(l) > 120 and not l.startswith('__all__'): long.append(f'{f.name}:{n}')   # nbdev writes __all__
        for t in tokenize.generate_tokens(io.StringIO(text).readline):
            if t.type == tokenize.OP and t.string == ';': chained.append(f'{f.name}:{t.start[0]}')
    assert not long, f'lines over 120 characters: {long}'
    assert not chained, f'statements chained with ";": {chained}'

def test_saved_outputs_match_their_code():
    "The chapters a reader opens first ship with outputs; they must be those of the current code (and library)."
    import importlib.util
    spec = importlib.util.spec_from_file_location('outputs', ROOT/'.ci'/'outputs.py')
    outputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(outputs)
    assert not outputs.stale(), f'saved outputs of {outputs.stale()} are stale: run `python .ci/outputs.py`'
    for name in outputs.EXECUTED:
        shown = [o for c in cells(ROOT/'nbs'/name) if c['cell_type'] == 'code' for o in c.get('outputs', [])]
        assert shown, f'{name} has no saved outputs'
        assert not any('application/vnd.jupyter.widget-view+json' in o.get('data', {}) for o in shown), name

LINK = re.compile(r'\]\((?!https?:|#|mailto:)([^)\s]+)\)')

def test_links_open_from_where_they_are_read():
    "Links and images in the notebooks are relative to nbs/ (JupyterLab, Colab); README.md's to the repository root."
    broken = [f'{p.name}: {t}' for p in NBS for c in cells(p) if c['cell_type'] == 'markdown'
              for t in LINK.findall(source(c)) if not (p.parent/t.split('#')[0]).exists()]
    broken += [f'README.md: {t}' for t in LINK.findall((ROOT/'README.md').read_text()) if not (ROOT/t.split('#')[0]).exists()]
    assert not broken, f'links that open nothing: {broken}'
