"""Render README.md from nbs/index.ipynb with nbconvert (nbdev_readme needs Quarto, which is not always installable).

`python .ci/readme.py` writes README.md; `python .ci/readme.py --check` exits 1 when README.md is out of date."""
import sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path:Path=ROOT/'nbs'/'index.ipynb')->str:
    "Markdown of the notebook: hidden cells dropped, `#|` directives stripped, stored outputs kept."
    nb = nbformat.read(nb_path, as_version=4)
    cells = []
    for c in nb.cells:
        lines = c.source.splitlines()
        if c.cell_type == 'code':
            if any(l.strip().replace(' ', '') in ('#|hide', '#|exporti', '#|export_hide') for l in lines): continue
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
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
