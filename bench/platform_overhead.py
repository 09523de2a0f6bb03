"""Platform overhead: the same fine-tuning as a job through the API and worker (embedded mode)
versus `mace_run_train` run directly, side by side in one run.

Both fine-tune the demo foundation naively on the same data for the same epochs; the direct run
uses the flags a researcher would write by hand (`--E0s=estimated`). Reported: submit-to-model
wall time over direct wall time (target at most 1.05).

Usage: python bench/platform_overhead.py [--data acac|molecules] [--configs 500] [--epochs 5]
                                        [--small] [--out FILE]

`acac` (the default when ../shared/data is there) is the README's real example: 500 acetylacetone
DFT configurations. The service's extra work is a fixed few seconds per job (upload, queue, E0s,
checks), so the ratio depends on how long the training itself runs; both are reported.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import demo_foundation_path, write_section  # noqa: E402
from bench.service import embedded_service, wait_for  # noqa: E402
from core.data.datasets import read_configurations  # noqa: E402
from core.data.demo_data import generate_target_dataset, write_extxyz  # noqa: E402
from core.science.spec import JobSpec  # noqa: E402
from core.science.strategies import effective_hyperparameters  # noqa: E402

ACAC_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "acac-pbe-d3-train_300K.xyz"
DATA_DESCRIPTION = {
    "acac": "acetylacetone, PBE-D3 (../shared/data)",
    "molecules": "demo EMT molecules (core.data.demo_data)",
}


def direct_argv(train: Path, foundation: Path, work: Path, spec: JobSpec) -> list[str]:
    hyper = spec.hyperparameters
    preset = effective_hyperparameters(spec)
    return [
        "--name=direct",
        f"--seed={hyper.seed}",
        "--device=cpu",
        "--default_dtype=float64",
        f"--train_file={train}",
        "--energy_key=energy",
        "--forces_key=forces",
        f"--work_dir={work}",
        f"--model_dir={work}",
        f"--log_dir={work}",
        f"--checkpoints_dir={work}",
        f"--results_dir={work}",
        f"--foundation_model={foundation}",
        "--multiheads_finetuning=False",
        "--E0s=estimated",
        "--loss=weighted",
        f"--energy_weight={hyper.energy_weight}",
        f"--forces_weight={hyper.forces_weight}",
        "--optimizer=adamw",
        f"--lr={preset.lr}",
        "--ema",
        f"--ema_decay={preset.ema_decay}",
        f"--clip_grad={preset.clip_grad}",
        f"--batch_size={hyper.batch_size}",
        f"--valid_batch_size={hyper.valid_batch_size}",
        f"--max_num_epochs={hyper.max_num_epochs}",
        f"--valid_fraction={spec.valid_fraction}",
        "--save_cpu",
        "--plot=False",
    ]


def time_direct(train: Path, foundation: Path, spec: JobSpec, folder: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mace.cli.run_train", *direct_argv(train, foundation, folder, spec)],
        check=True,
        cwd=folder,
        capture_output=True,
    )
    return time.perf_counter() - start


def time_platform(train: Path, foundation: Path, spec: dict, folder: Path) -> dict[str, float]:
    """Wall seconds from upload to downloaded model, and where they went (the job's own clock)."""
    with embedded_service(folder / "var", foundation.parent) as client:
        # A service runs for weeks: its worker has started and imported torch and mace before
        # the job that is timed, so a first, tiny job is not counted.
        _warm_up(client, folder)
        start = time.perf_counter()
        with train.open("rb") as stream:
            dataset = client.post("/datasets", files={"file": (train.name, stream)}).json()
        uploaded = time.perf_counter()
        job = client.post("/jobs", json={**spec, "train_dataset": dataset["id"]}).json()
        finished = wait_for(client, f"/jobs/{job['id']}", poll=0.2)
        model = client.get(f"/jobs/{job['id']}/model")
        elapsed = time.perf_counter() - start
    if finished["state"] != "succeeded" or model.status_code != 200:
        raise RuntimeError(f"the job did not succeed: {finished['error']}")
    created, started, ended = (
        datetime.fromisoformat(finished[key]) for key in ("created_at", "started_at", "finished_at")
    )
    return {
        "total": elapsed,
        "upload": uploaded - start,
        "queued": (started - created).total_seconds(),
        "running": (ended - started).total_seconds(),
    }


def _warm_up(client, folder: Path) -> None:
    # Other data than the timed job's, so that nothing the timed job computes is cached.
    data = write_extxyz(generate_target_dataset(10, seed=99, system="molecules"), folder / "w.xyz")
    with data.open("rb") as stream:
        dataset = client.post("/datasets", files={"file": (data.name, stream)}).json()
    spec = {"hyperparameters": {"max_num_epochs": 1}, "evaluation": {"md": False, "dimers": False}}
    job = client.post("/jobs", json={**spec, "train_dataset": dataset["id"]}).json()
    wait_for(client, f"/jobs/{job['id']}", poll=0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["acac", "molecules"], default=None)
    parser.add_argument("--configs", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="a tiny run (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    configs, epochs = (20, 1) if args.small else (args.configs, args.epochs)
    data = args.data or ("acac" if ACAC_TRAIN.is_file() and not args.small else "molecules")
    foundation = demo_foundation_path()
    # The same fine-tuning on both paths: no evaluation stage, which mace_run_train lacks.
    spec = {
        "hyperparameters": {"max_num_epochs": epochs, "batch_size": 10},
        "evaluation": {"md": False, "dimers": False},
    }
    with tempfile.TemporaryDirectory(prefix="mlft-bench-") as tmp:
        folder = Path(tmp)
        if data == "acac":
            structures = read_configurations(ACAC_TRAIN)[:configs]
        else:
            structures = generate_target_dataset(configs, seed=5, system="molecules")
        configs = len(structures)
        train = write_extxyz(structures, folder / "train.xyz")
        (folder / "direct").mkdir()
        direct = time_direct(
            train, foundation, JobSpec(train_dataset="x", **spec), folder / "direct"
        )
        platform = time_platform(train, foundation, spec, folder)
    rows = [
        ("data", DATA_DESCRIPTION[data]),
        ("configurations / epochs", f"{configs} / {epochs}"),
        ("mace_run_train directly (s)", f"{direct:.1f}"),
        ("job through API + worker, submit to model (s)", f"{platform['total']:.1f}"),
        ("of which: upload and validation (s)", f"{platform['upload']:.1f}"),
        ("of which: queued until a worker took it (s)", f"{platform['queued']:.1f}"),
        (
            "of which: running (preflight, E0s, training, checks, exports) (s)",
            f"{platform['running']:.1f}",
        ),
        ("service's extra time (s)", f"{platform['total'] - direct:.1f}"),
        ("ratio (target ≤ 1.05)", f"{platform['total'] / direct:.2f}"),
    ]
    for name, value in rows:
        print(f"{name:48s} {value}")
    if args.out is not None:
        write_section(
            args.out,
            "Platform overhead: job through the service vs mace_run_train",
            rows,
            command=f"python bench/platform_overhead.py --data {data} --configs {configs} "
            f"--epochs {epochs} --out {args.out}",
        )


if __name__ == "__main__":
    main()
