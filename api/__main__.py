"""`mlft-server` (or `python -m api`): the API under uvicorn on this machine, one process per core
unless told otherwise (MLFT_API_WORKERS, --workers). With no database or broker configured it is
the embedded service: SQLite, a folder broker and one local worker."""

import argparse
import sys
from collections.abc import Sequence

from api.server import serve
from core.config import get_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlft-server", description="Run the mlft API server.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (%(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="API processes (default: MLFT_API_WORKERS, else one per core)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    serve(settings, args.host, args.port, args.workers or settings.resolved_api_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
