"""Render README.md from nbs/index.ipynb with nbconvert (nbdev_readme needs Quarto, which is not always installable).

`python .ci/readme.py` writes README.md; `python .ci/readme.py --check` exits 1 when README.md is out of date."""
import posixpath, re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]

LINK = re.compile(r'\]\((?!https?:|#|/|mailto:)([^)\s]+)\)')

def from_root(md:str, folder:str='nbs')->str:
    "Links and images of a notebook in `folder`, rewritten relative to the repository root (where README.md is)."
    return LINK.sub(lambda m: f'](' + posixpath.normpath(f'{folder}/{m.group(1)}') + ')', md)

def render(nb_path:Path=ROOT/'nbs'/'index.ipynb')->str:
    "Markdown of the notebook: hidden cells dropped, `#|` directives stripped, stored outputs kept, links from the root."
    nb = nbformat.read(nb_path, as_version=4)
    cells = []
    for c in nb.cells:
        lines = c.source.splitlines()
        if c.cell_type == 'code':
            if any(l.strip().replace(' ', '') in ('#|hide', '#|exporti', '#|export_hide') for l in lines): continue
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        elif c.cell_type == 'markdown': c.source = from_root(c.source)
        cells.append(c)
    nb.cells = cells
    body, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    return body.strip() + '\n'

if __name__ == '__main__':
    md, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != md:
            sys.exit('README.md is not what nbs/index.ipynb renders to: run `python .ci/readme.py` and commit it.')
    else: readme.write_text(md)
