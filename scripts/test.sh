#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, and run the whole test suite: fast, slow, real-data and Triton (interpreter) tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check lfp_snn tests benchmarks examples
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
