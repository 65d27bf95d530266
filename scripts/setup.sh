#!/usr/bin/env bash
# Create .venv (once) and install gptlab into it. Usage: scripts/setup.sh [EXTRAS], e.g. "dev".
# torch is installed explicitly first with an exact version (override with TORCH_SPEC) so that pip
# never resolves an open range to a different, possibly multi-GB, build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
. .venv/bin/activate
spec="."
[ -n "$extras" ] && spec=".[$extras]"
python -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}" -e "$spec"
