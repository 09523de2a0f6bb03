#!/usr/bin/env bash
# Set up and run the whole test suite against PostgreSQL and Redis on 127.0.0.1
# (override with MLFT_TEST_DATABASE_URL and BROKER_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Types: strict on core's science, lenient elsewhere ([tool.mypy] in pyproject.toml).
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
