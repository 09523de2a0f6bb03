"""Write the demo job's datasets: small molecules labelled by EMT with per-element energy offsets,
a stand-in for data at another level of theory than the demo foundation.

Usage: python scripts/make_demo_data.py --out var/demo
"""

import argparse
import sys
from pathlib import Path

# Lets the script run from a checkout where mlft is not pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.demo_data import generate_target_dataset, write_extxyz  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/demo"))
    args = parser.parse_args(argv)
    for name, size, seed in (("train", 60, 1), ("test", 20, 2)):
        path = write_extxyz(
            generate_target_dataset(size, seed, system="molecules"), args.out / f"{name}.extxyz"
        )
        print(f"wrote {size} configurations to {path}")


if __name__ == "__main__":
    main()
