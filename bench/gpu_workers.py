"""GPU workers at full use (issue 27 item 5, the GPU rows), each measured side by side in one run:

1. batch size → atoms/s and memory: training steps of the MACE-MP-0-small stand-in on 108-atom
   copper cells at growing batch sizes, and the batch core.science.edge_budget.pick_batch_size
   picks (the plateau, or ≥ 50 % of the device's memory, whichever comes first);
2. a naive job through the service's own training (core.workflows.training.run_training: edge
   budget from the device, cuEq on where mace supports it) against the raw `mace_run_train`
   command it wraps, with the same data, epochs, batch and flags (target ≤ 1.10× its wall time);
3. cuEq on vs off: the same raw command with --enable_cueq=True and False;
4. eight demo-sized jobs at once (each its own process, admitted through the GPU ledger) against
   the same eight one after another.

On a CPU only --small runs (row 1 on tiny batches, so the script cannot rot); the GPU rows are
written to docs/benchmarks.md by a run on the GPU.

Usage: python bench/gpu_workers.py [--device cuda] [--cells 24] [--epochs 3] [--jobs 8]
       [--batches 1,2,4,8,16,32] [--small] [--out docs/benchmarks.md]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import write_section  # noqa: E402
from bench.real_size import copper_cells  # noqa: E402
from bench.strategy_throughput import (  # noqa: E402
    StageClock,
    demo_foundation,
    epoch_loop_seconds,
    foundation_of,
    strategy_spec,
)
from core.data.demo_data import generate_target_dataset, write_extxyz  # noqa: E402
from core.registry.foundations import load_foundation  # noqa: E402
from core.science.cost import probe_cost  # noqa: E402
from core.science.edge_budget import CurvePoint, pick_batch_size  # noqa: E402
from core.science.spec import JobSpec  # noqa: E402
from core.science.strategies import TrainingInputs, to_mace_argv  # noqa: E402
from core.workflows.training import run_training  # noqa: E402
from core.workflows.training_records import JobFiles  # noqa: E402

TITLE = "GPU workers at full use"
MB = 2**20


def batch_curve(
    device: str, batches: list[int], cells: list, family: str = "mace-mp-0-small"
) -> tuple[list[CurvePoint], list]:
    """Training steps (forces in the loss, AdamW) of the stand-in at each batch size."""
    foundation = foundation_of(family)
    model = load_foundation(foundation, device)
    total = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else None
    points, rows = [], []
    for size in batches:
        spec = strategy_spec("naive", 1, acknowledge=True)
        spec = spec.model_copy(
            update={"hyperparameters": spec.hyperparameters.model_copy(update={"batch_size": size})}
        )
        estimate = probe_cost(
            spec, model, cells[:size], n_valid=0, n_train=size, device=device, max_edges=10**9
        )
        atoms = sum(len(atoms) for atoms in cells[:size])
        rate = atoms / estimate.seconds_per_step
        share = estimate.peak_memory_mb * MB / total if total else 0.0
        points.append(CurvePoint(size, rate, share))
        rows.append((size, rate, estimate.peak_memory_mb))
        print(f"batch {size:3d}: {rate:9.0f} atoms/s, peak {estimate.peak_memory_mb:9.0f} MB")
    return points, rows


def naive_job(
    folder: Path, device: str, cells: int, epochs: int
) -> tuple[float, float, Path, JobSpec]:
    """The service's naive job on copper cells: its wall time, its training stage's, and its
    work folder (which holds the argv-ready inputs the raw command reuses)."""
    files = JobFiles(
        train=write_extxyz(copper_cells(cells, 5), folder / "train.xyz"),
        valid=write_extxyz(copper_cells(max(2, cells // 6), 6), folder / "valid.xyz"),
    )
    spec = strategy_spec("naive", epochs, acknowledge=True)
    spec = spec.model_copy(
        update={"hyperparameters": spec.hyperparameters.model_copy(update={"batch_size": cells})}
    )
    clock = StageClock(training_only=False)
    start = time.perf_counter()
    work = folder / "job"
    run_training(spec, files, foundation_of("mace-mp-0-small"), work, clock, device=device)
    return time.perf_counter() - start, clock.seconds["training"], work, spec


def raw_mace(
    spec: JobSpec, job_work: Path, work: Path, device: str, cueq: bool
) -> tuple[float, float]:
    """`mace_run_train` itself on the job's prepared files (its data with the job's E0s in the
    foundation copy), with the job's flags: wall time and epoch-loop seconds."""
    work.mkdir(parents=True, exist_ok=True)
    inputs = TrainingInputs(
        work_dir=work,
        train_file=job_work / "train.extxyz",
        valid_file=job_work / "valid.extxyz",
        foundation_file=job_work / "foundation_with_e0s.model",
        e0s={},
        device=device,
        cueq=cueq,
    )
    start = time.perf_counter()
    with (work / "mace.log").open("wb") as log:
        subprocess.run(
            [sys.executable, "-m", "mace.cli.run_train", *to_mace_argv(spec, inputs)],
            stdout=log,
            stderr=log,
            check=True,
        )
    return time.perf_counter() - start, epoch_loop_seconds(work / "mace.log")


def demo_job(index: int, folder: str, device: str, epochs: int) -> float:
    """One demo-sized job (40 molecules, the demo foundation), in its own process."""
    work = Path(folder) / f"demo-{index}"
    work.mkdir(parents=True, exist_ok=True)
    files = JobFiles(
        train=write_extxyz(
            generate_target_dataset(40, seed=index, system="molecules"), work / "t.xyz"
        )
    )
    spec = strategy_spec("naive", epochs)
    start = time.perf_counter()

    class Named(StageClock):
        job_id = f"bench-demo-{index}"

    run_training(spec, files, demo_foundation(), work / "job", Named(), device=device)
    return time.perf_counter() - start


def demo_jobs(folder: Path, device: str, jobs: int, epochs: int, at_once: bool) -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(jobs if at_once else 1, mp_context=get_context("spawn")) as pool:
        list(
            pool.map(demo_job, range(jobs), [str(folder)] * jobs, [device] * jobs, [epochs] * jobs)
        )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--small", action="store_true", help="row 1 on batches 1 and 2 (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    batches = [1, 2] if args.small else [int(b) for b in args.batches.split(",")]
    if args.small:  # the demo foundation on small CuAu cells: seconds on a CPU
        points, _ = batch_curve(
            args.device, batches, generate_target_dataset(2, seed=3, system="CuAu"), "demo"
        )
    else:
        points, _ = batch_curve(args.device, batches, copper_cells(max(batches), 3))
    pick = pick_batch_size(points)
    rows = [
        (
            f"batch {p.batch_size}: atoms/s, memory share",
            f"{p.atoms_per_second:.0f}, {p.memory_share:.1%}",
        )
        for p in points
    ]
    rows.append(("picked batch", f"{pick.batch_size}: {pick.reason}"))
    if not args.small:
        with tempfile.TemporaryDirectory(prefix="mlft-bench-gpu-") as tmp:
            folder = Path(tmp)
            wall, training, work, spec = naive_job(folder, args.device, args.cells, args.epochs)
            raw_on, loop_on = raw_mace(spec, work, folder / "raw-on", args.device, True)
            raw_off, loop_off = raw_mace(spec, work, folder / "raw-off", args.device, False)
            at_once = demo_jobs(folder / "at-once", args.device, args.jobs, 5, True)
            serial = demo_jobs(folder / "serial", args.device, args.jobs, 5, False)
        rows += [
            ("naive job wall / its training stage (s)", f"{wall:.1f} / {training:.1f}"),
            ("raw mace_run_train, cuEq on (s)", f"{raw_on:.1f}"),
            ("job training stage / raw (target ≤ 1.10)", f"{training / raw_on:.2f}"),
            ("epoch loop cuEq on / off (s)", f"{loop_on:.1f} / {loop_off:.1f}"),
            (
                f"{args.jobs} demo jobs at once / one after another (s)",
                f"{at_once:.1f} / {serial:.1f}",
            ),
        ]
    for name, value in rows:
        print(f"{name:50s} {value}")
    if args.out is not None and not args.small:
        write_section(
            args.out,
            TITLE,
            rows,
            command=f"python bench/gpu_workers.py --device {args.device} --out {args.out}",
        )


if __name__ == "__main__":
    main()
