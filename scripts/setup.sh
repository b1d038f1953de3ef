#!/usr/bin/env bash
# Create the project's virtual environment (default .venv) with the whole stack.
# Order matters (see the README): torch first, then sam2 without build isolation and without
# its CUDA extension, then this package with its Qt and test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

quiet_pip() {
  # pip's own warnings about unreachable local indexes are noise on these machines.
  "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
quiet_pip install -q --upgrade pip setuptools wheel

case "$(uname -m)" in
  aarch64|arm64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;  # CPU build for Arm
  *)             TORCH="torch==2.14.1 torchvision==0.29.1" ;;
esac
echo "[setup] torch ($TORCH)"
# shellcheck disable=SC2086
quiet_pip install -q $TORCH
echo "[setup] sam2 1.1.0 (no build isolation, no CUDA extension)"
SAM2_BUILD_CUDA=0 quiet_pip install -q --no-build-isolation "sam2==1.1.0"
echo "[setup] napari-instseg with its SAM 2, Qt and test extras"
quiet_pip install -q -e ".[sam2,qt,test]"
echo "[setup] done: $VENV"
