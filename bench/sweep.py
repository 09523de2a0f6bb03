"""A strategy sweep as one request versus the same jobs submitted one by one, each on a fresh
embedded service (its own database, queue and cache), side by side in one run.

Usage: python bench/sweep.py [--configs 60] [--epochs 2] [--small] [--out docs/benchmarks.md]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.common import demo_foundation_path, write_section  # noqa: E402
from bench.service import embedded_service, wait_for  # noqa: E402
from core.data.demo_data import generate_target_dataset, write_extxyz  # noqa: E402
from core.workflows.sweeps import SweepSpec, expand  # noqa: E402

STRATEGIES = ["naive", "freeze_interactions", "lora", "pseudolabel_replay", "scratch"]


def upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as stream:
        return client.post("/datasets", files={"file": (path.name, stream)}).json()["id"]


def sweep_request(train: str, replay: str, strategies: list[str], epochs: int) -> dict:
    return {
        "base": {
            "train_dataset": train,
            "hyperparameters": {"max_num_epochs": epochs, "batch_size": 10},
            "evaluation": {"md": False, "dimers": False},
        },
        "strategies": strategies,
        "replay": {"dataset": replay},
    }


def one_by_one(client: httpx.Client, request: dict) -> float:
    """What a researcher does without sweeps: submit a job, wait for it, submit the next."""
    specs = expand(SweepSpec.model_validate(request))
    start = time.perf_counter()
    for spec in specs:
        job = client.post("/jobs", json=spec.model_dump(mode="json")).json()
        if wait_for(client, f"/jobs/{job['id']}", poll=0.5)["state"] != "succeeded":
            raise RuntimeError(f"job {job['id']} did not succeed")
    return time.perf_counter() - start


def as_sweep(client: httpx.Client, request: dict) -> float:
    start = time.perf_counter()
    sweep = client.post("/sweeps", json=request).json()
    while not (summary := client.get(f"/sweeps/{sweep['id']}").json())["finished"]:
        time.sleep(0.5)
    if summary["jobs"] != {"succeeded": len(summary["table"])}:
        raise RuntimeError(f"sweep jobs did not all succeed: {summary['jobs']}")
    return time.perf_counter() - start


def timed_on_fresh_service(folder: Path, files: dict[str, Path], run, strategies, epochs) -> float:
    with embedded_service(folder, demo_foundation_path().parent) as client:
        request = sweep_request(
            upload(client, files["train"]), upload(client, files["replay"]), strategies, epochs
        )
        return run(client, request)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="two strategies, one epoch (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    strategies = STRATEGIES[:2] if args.small else STRATEGIES
    configs, epochs = (12, 1) if args.small else (args.configs, args.epochs)
    with tempfile.TemporaryDirectory(prefix="mlft-bench-sweep-") as tmp:
        folder = Path(tmp)
        files = {
            "train": write_extxyz(
                generate_target_dataset(configs, seed=8, system="molecules"), folder / "t.xyz"
            ),
            "replay": write_extxyz(
                generate_target_dataset(configs // 2, seed=9, system="molecules"), folder / "r.xyz"
            ),
        }
        separate = timed_on_fresh_service(
            folder / "one-by-one", files, one_by_one, strategies, epochs
        )
        sweep = timed_on_fresh_service(folder / "sweep", files, as_sweep, strategies, epochs)
    rows = [
        ("strategies", ", ".join(strategies)),
        ("configurations / epochs", f"{configs} / {epochs}"),
        ("jobs one by one (s)", f"{separate:.1f}"),
        ("one sweep (s)", f"{sweep:.1f}"),
        ("sweep / one by one", f"{sweep / separate:.2f}"),
    ]
    for name, value in rows:
        print(f"{name:28s} {value}")
    if args.out is not None:
        write_section(
            args.out,
            "Sweep versus the same jobs one by one",
            rows,
            command=f"python bench/sweep.py --configs {configs} --epochs {epochs} --out {args.out}",
        )


if __name__ == "__main__":
    main()
