#!/usr/bin/env bash
# Set up .venv with the dev extras, lint, and run the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/setup-browser.sh
. .venv/bin/activate
ruff check gptlab tests bench
ruff format --check gptlab tests bench
python -m pytest -q "$@"
