#!/usr/bin/env bash
# The whole test suite: library in sync with the notebooks, clean notebooks, README up to date, every notebook
# run top to bottom (GPU cells skipped), then pytest on tests/ (in parallel: a test file per worker). Every stage
# runs even when an earlier one fails, so one red notebook does not hide the others' results; the exit status is
# non-zero if any stage failed. pytest runs last, so its summary is the last line; the failed earlier stages are
# listed just before it.
set -uo pipefail
cd "$(dirname "$0")/.."
export HERA_CACHE="${HERA_CACHE:-$PWD/.hera_cache}"   # tiny models built once, shared by notebooks and tests
export TOKENIZERS_PARALLELISM=false
failed=()

in_git() { git rev-parse --is-inside-work-tree >/dev/null 2>&1; }
unchanged() {  # $1: what was run, $2..: paths that must not have changed
  local what=$1; shift
  if in_git && [ -n "$(git status --porcelain -- "$@")" ]; then
    git status --porcelain -- "$@"; git --no-pager diff --stat -- "$@"
    echo "FAIL: '$what' changed the files above: run it, review and commit the result."; return 1
  fi
}
stage() {  # $1: name, $2..: command; runs it, says how long it took, records a failure without stopping the suite
  local name=$1 start=$SECONDS; shift
  echo "== $name"
  if ! "$@"; then failed+=("$name"); echo "FAIL: stage '$name'"; fi
  echo "   ($((SECONDS - start)) s)"
}

before=$(in_git && git status --porcelain -- hera_nbs nbs || true)
[ -z "$before" ] || echo "(uncommitted changes under hera_nbs/ or nbs/: the export and clean sync checks are skipped)"
export_check() { nbdev_export && { [ -n "$before" ] || unchanged nbdev_export hera_nbs; }; }
clean_check() { nbdev_clean && { [ -n "$before" ] || unchanged nbdev_clean nbs; }; }
stage "nbdev_export: hera_nbs/ must be exactly what the notebooks export" export_check
stage "nbdev_clean: notebooks must be clean" clean_check
stage "README.md must be what nbs/index.ipynb renders to" python .ci/readme.py --check
stage "nbdev_test: every notebook, top to bottom (cells flagged gpu are skipped)" \
  env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nbdev_test --n_workers 2 --do_print --timing

if [ ${#failed[@]} -gt 0 ]; then
  echo "== stages that failed before pytest (${#failed[@]}):"; printf '   - %s\n' "${failed[@]}"
fi
echo "== pytest tests/ (pytest-xdist: one worker per core, a test file per worker; the 15 slowest tests listed)"
python -m pytest tests -q -p no:cacheprovider -n auto --dist loadfile --durations 15 || failed+=(pytest)
[ ${#failed[@]} -eq 0 ]
