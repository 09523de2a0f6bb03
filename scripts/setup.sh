#!/usr/bin/env bash
# Create .venv and install both distributions editable: the server (mlft, with its test tools) and
# the client in client/ (mlft-client, the `mlft` command). torch is pinned first: this machine
# keeps a CPU build of torch 2.13.0 on disk, while a plain `torch` requirement would pull a CUDA
# build. The gpu extra (cuEquivariance, pure Python wheels) lets the tests compare its kernels
# with e3nn on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==${MLFT_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[test,gpu]" -e "./client[yaml]"
