"""An eight-strategy sweep with successive halving against the same sweep without it, on the same
data, each on a fresh embedded service (issue 27 item 5, the CPU row): the compute both took
(the sum of their jobs' wall times; one worker runs one job at a time) and the single-system
winner each recommends.

Usage: python bench/sweep_halving.py [--configs 40] [--epochs 9] [--small]
       [--out docs/benchmarks.md]
"""

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.common import demo_foundation_path, write_section  # noqa: E402
from bench.service import embedded_service  # noqa: E402
from bench.sweep import upload  # noqa: E402
from core.data.demo_data import generate_target_dataset, write_extxyz  # noqa: E402
from core.science.strategy_table import STRATEGY_NAMES  # noqa: E402

TITLE = "Sweep with successive halving versus without (CPU)"


def sweep_request(files: dict[str, str], strategies: list[str], epochs: int, halving: bool) -> dict:
    return {
        "base": {
            "train_dataset": files["train"],
            "test_dataset": files["test"],
            "hyperparameters": {"max_num_epochs": epochs, "batch_size": 10},
            "evaluation": {"md": False, "dimers": False},
        },
        "strategies": strategies,
        "replay": {"dataset": files["replay"]},
        "early_stopping": halving,
    }


def run_sweep(client: httpx.Client, request: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    sweep = client.post("/sweeps", json=request)
    sweep.raise_for_status()
    sweep_id = sweep.json()["id"]
    while not (summary := client.get(f"/sweeps/{sweep_id}").json())["finished"]:
        time.sleep(0.5)
    return time.perf_counter() - start, summary


def job_seconds(client: httpx.Client, summary: dict) -> float:
    """Compute: every job's wall time from its start to its end, summed."""
    total = 0.0
    for row in summary["table"]:
        job = client.get(f"/jobs/{row['job_id']}").json()
        started, finished = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
        total += (finished - started).total_seconds()
    return total


def on_fresh_service(folder: Path, paths: dict[str, Path], request_of) -> tuple[float, float, dict]:
    with embedded_service(folder, demo_foundation_path().parent) as client:
        ids = {role: upload(client, path) for role, path in paths.items()}
        wall, summary = run_sweep(client, request_of(ids))
        return wall, job_seconds(client, summary), summary


def winner(summary: dict) -> str:
    choice = (summary.get("recommendation") or {}).get("single_system") or {}
    return f"{choice.get('strategy')} ({choice.get('reason')})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--small", action="store_true", help="four strategies, 3 epochs (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    strategies = (
        ["naive", "freeze_readout_only", "lora", "scratch"] if args.small else list(STRATEGY_NAMES)
    )
    configs, epochs = (12, 3) if args.small else (args.configs, args.epochs)
    with tempfile.TemporaryDirectory(prefix="mlft-bench-halving-") as tmp:
        folder = Path(tmp)
        paths = {
            role: write_extxyz(
                generate_target_dataset(count, seed=seed, system="molecules"),
                folder / f"{role}.xyz",
            )
            for role, count, seed in (
                ("train", configs, 8),
                ("test", max(6, configs // 4), 10),
                ("replay", max(6, configs // 2), 9),
            )
        }
        results = {
            halving: on_fresh_service(
                folder / ("halving" if halving else "full"),
                paths,
                lambda ids, h=halving: sweep_request(ids, strategies, epochs, h),
            )
            for halving in (False, True)
        }
    (full_wall, full_compute, full), (halved_wall, halved_compute, halved) = (
        results[False],
        results[True],
    )
    stopped = halved.get("early_stopping", {}).get("stopped", [])
    rows = [
        ("strategies", ", ".join(strategies)),
        ("configurations / epochs", f"{configs} / {epochs}"),
        ("without halving: compute (s, sum of job wall times)", f"{full_compute:.1f}"),
        ("with halving: compute (s)", f"{halved_compute:.1f}"),
        ("compute ratio (target ≤ 0.5)", f"{halved_compute / full_compute:.2f}"),
        ("sweep wall time without / with (s)", f"{full_wall:.1f} / {halved_wall:.1f}"),
        (
            "stopped early",
            "; ".join(f"{job['strategy']} after {job['after_epochs']}" for job in stopped)
            or "none",
        ),
        ("single-system winner without halving", winner(full)),
        ("single-system winner with halving", winner(halved)),
        ("same winner", str(winner(full).split()[0] == winner(halved).split()[0])),
    ]
    for name, value in rows:
        print(f"{name:55s} {value}")
    if args.out is not None:
        write_section(
            args.out,
            TITLE,
            rows,
            command=(
                f"python bench/sweep_halving.py --configs {configs} --epochs {epochs} "
                f"--out {args.out}"
            ),
        )


if __name__ == "__main__":
    main()
