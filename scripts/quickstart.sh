#!/usr/bin/env bash
# Set up .venv and run the quickstart (offline, built-in corpus). Extra args go to `gptlab quickstart`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec gptlab quickstart "$@"
