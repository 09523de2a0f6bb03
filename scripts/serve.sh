#!/usr/bin/env bash
# One command from a fresh clone to a running service in the embedded default: SQLite, a folder
# broker and a local Celery worker under ./var. On first start the API answers at once and builds
# the demo foundation model in the background (GET /foundation-models shows its progress).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MLFT_DATA_DIR=${MLFT_DATA_DIR:-var}
.venv/bin/python scripts/make_demo_data.py --out "$MLFT_DATA_DIR/demo"
exec .venv/bin/mlft-server --host "${MLFT_HOST:-127.0.0.1}" --port "${MLFT_PORT:-8000}"
