#!/usr/bin/env bash
# One command from a fresh clone to a running service in the embedded default: SQLite, a folder
# broker and a local Celery worker under ./var, the demo foundation model built on first start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MLFT_DATA_DIR=${MLFT_DATA_DIR:-var}
.venv/bin/python scripts/build_demo_foundation.py --out "${MLFT_MODELS_DIR:-$MLFT_DATA_DIR/foundations}/mace-demo-emt.model"
.venv/bin/python scripts/make_demo_data.py --out "$MLFT_DATA_DIR/demo"
exec .venv/bin/python -m uvicorn api.app:create_app --factory --host "${MLFT_HOST:-127.0.0.1}" --port "${MLFT_PORT:-8000}"
