"""Train the demo MACE foundation on EMT data and write its `.model` file.

Usage: python scripts/build_demo_foundation.py --out var/foundations/mace-demo-emt.model [--seed 0]
"""

import argparse
import sys
import time
from pathlib import Path

# Lets the script run from a checkout where mlft is not pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.registry.foundations import pin_model_file  # noqa: E402
from core.science.demo_foundation import DEMO_FOUNDATION_NAME, build_demo_foundation  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("var/foundations") / f"{DEMO_FOUNDATION_NAME}.model",
        help="where to write the model (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data and training")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.out.exists() and not args.force:
        # A model built before the registry required pins is the operator's own: pin it.
        pin_model_file(args.out)
        print(f"{args.out} exists; not rebuilding (use --force to rebuild)")
        return
    started = time.perf_counter()
    build_demo_foundation(args.out, seed=args.seed)
    elapsed = time.perf_counter() - started
    print(f"wrote {DEMO_FOUNDATION_NAME} (seed {args.seed}) to {args.out} in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
