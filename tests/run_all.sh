#!/usr/bin/env bash
# The whole test suite: library in sync with the notebooks, clean notebooks, README up to date,
# every notebook run top to bottom (GPU cells skipped), then pytest on tests/ (its summary is the last line).
set -euo pipefail
cd "$(dirname "$0")/.."
export HERA_CACHE="${HERA_CACHE:-$PWD/.hera_cache}"   # tiny models built once, shared by notebooks and tests
export TOKENIZERS_PARALLELISM=false

in_git() { git rev-parse --is-inside-work-tree >/dev/null 2>&1; }
unchanged() {  # $1: what was run, $2..: paths that must not have changed
  local what=$1; shift
  if in_git && [ -n "$(git status --porcelain -- "$@")" ]; then
    git status --porcelain -- "$@"; git --no-pager diff --stat -- "$@"
    echo "FAIL: '$what' changed the files above: run it, review and commit the result."; exit 1
  fi
}

echo "== nbdev_export: hera_nbs/ must be exactly what the notebooks export"
before=$(in_git && git status --porcelain -- hera_nbs nbs || true)
[ -z "$before" ] || echo "(uncommitted changes under hera_nbs/ or nbs/: the export and clean sync checks are skipped)"
nbdev_export
[ -n "$before" ] || unchanged nbdev_export hera_nbs
echo "== nbdev_clean: notebooks must be clean"
nbdev_clean
[ -n "$before" ] || unchanged nbdev_clean nbs
echo "== README.md must be what nbs/index.ipynb renders to"
python .ci/readme.py --check
echo "== nbdev_test: every notebook, top to bottom (cells flagged gpu are skipped)"
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nbdev_test --n_workers 2 --do_print
echo "== pytest tests/"
python -m pytest tests -q -p no:cacheprovider
