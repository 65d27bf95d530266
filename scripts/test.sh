#!/usr/bin/env bash
# Set up .venv with the dev extras, check the package shape, lint, and run the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/setup-browser.sh
. .venv/bin/activate
# the real datasets for the tests marked `data`: the shared mirror beside the repository, if any
if [ -z "${GPTLAB_DATA_MIRROR:-}" ] && [ -d ../shared/data ]; then
    export GPTLAB_DATA_MIRROR="$(cd ../shared/data && pwd)"
fi
python scripts/architecture.py  # the package's shape: circles, CLI imports, private imports, line budgets
ruff check gptlab tests bench
ruff format --check gptlab tests bench
python -m pytest -q "$@"
