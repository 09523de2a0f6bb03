"""Fine-tuning throughput per strategy: configurations trained per second and the peak memory of
mace-torch's training process, every strategy on the same data and device in one run.

Each strategy runs through core.workflows.training.run_training as a worker runs it: E0
re-estimation, mace-torch in a child process, the checks on the delivered model. Configurations/s is
training
configurations × epochs over two wall times:
- the job's "training" stage, which includes what a job pays besides the epochs: mace's start-up,
  reading and graph-building the data, pseudolabelling the replay set, the final evaluation;
- mace's epoch loop alone (validation every epoch included), from mace's own log timestamps.
Replay strategies also train their replay head on the replay set every epoch; those
configurations are not counted.

Other processes on the machine slow some runs down: with --repeats, the strategies run in turn
that many times and each reports its fastest run (as timeit does), with the largest peak memory.

Peak memory is the largest VmHWM (peak resident set) of the processes below this one, sampled
while the training stage runs: that is the mace-torch process. resource.getrusage(RUSAGE_CHILDREN)
is not used: it keeps the maximum over every child so far, so a light strategy run after a heavy
one would report the heavy one's peak.

With --foundation set to a stand-in family (core.registry.standin_foundations: mace-mp-0-small,
mace-off23-small, mace-multihead) the same runs use a model of that published architecture, and
--system CuAu trains on 4- and 8-atom CuAu cells instead of molecules (replayed on other CuAu
cells), --system Cu108 on the copper cells of bench/real_size.py (107-108 atoms, replayed on CuAu
cells): the per-epoch cost of each strategy at that model size.

The cost table (--table FILE, or $OUT/strategy_costs.md when OUT is set) has one row per
strategy: seconds per epoch, the training stage's wall time, the peak resident memory of mace's
training process and, on a GPU, its peak allocated GPU memory (torch.cuda.max_memory_allocated,
written by that process as it exits) and the worker's own (preflight, E0s, pseudolabels). It is
rewritten after every run, so a run cut short keeps the strategies it measured.
--training-only ends each job once its training stage is over: the checks, exports and
evaluation that follow are the same for every strategy (bench/real_size.py measures them).

Usage: python bench/strategy_throughput.py [--configs 100] [--epochs 10] [--replay 50]
       [--repeats 2] [--strategies naive,lora|all] [--device cpu|cuda] [--small] [--out FILE]
       [--foundation mace-mp-0-small] [--system CuAu|Cu108] [--training-only] [--table FILE]
"""

import argparse
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.api_load import descendant_pids, peak_rss_mb  # noqa: E402
from bench.common import (  # noqa: E402
    demo_foundation_path,
    machine_description,
    models_folder,
    write_section,
)
from core.data.datasets import read_configurations  # noqa: E402
from core.data.demo_data import (  # noqa: E402
    EMT_NONMETALS,
    generate_foundation_configurations,
    generate_target_dataset,
    write_extxyz,
)
from core.registry.foundations import DEMO_FOUNDATION_NAME, FoundationModel  # noqa: E402
from core.science.inference import edge_budget  # noqa: E402
from core.science.spec import JobSpec  # noqa: E402
from core.science.strategy_table import REPLAY_STRATEGIES, STRATEGY_NAMES  # noqa: E402
from core.workflows.mace_inputs import batch_size_for_edges  # noqa: E402
from core.workflows.training import run_training  # noqa: E402
from core.workflows.training_records import JobFiles  # noqa: E402

# mace-torch 0.3.16 logs these around its epoch loop, with millisecond timestamps.
LOOP_STARTS = "Started training"
LOOP_ENDS = "Training complete"
# VmHWM only grows, so sampling often enough to catch the process before it exits is all it needs.
SAMPLE_SECONDS = 0.2
# The mace-torch process writes its peak GPU memory here as it exits (core/science/mace_process.py).
CUDA_PEAK_ENV = "MLFT_BENCH_CUDA_PEAK_FILE"
SYSTEMS = ("molecules", "CuAu", "Cu108")
MB = 2**20


class TrainingMeasured(Exception):
    """Raised by StageClock when the training stage ends and the job need not go further."""


class MemorySampler:
    """Peak resident set over this process's descendants, sampled in a background thread."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            for pid in descendant_pids(os.getpid()):
                self.peak_mb = max(self.peak_mb, peak_rss_mb(pid))


@dataclass
class StageClock:
    """A Progress for run_training that times each stage and samples memory while training."""

    started: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    sampler: MemorySampler = field(default_factory=MemorySampler)
    training_only: bool = False
    _current: str | None = None

    def stage(self, name: str) -> None:
        now = time.perf_counter()
        if self._current is not None:
            self.seconds[self._current] = now - self.started[self._current]
        if self._current == "training":
            self.sampler.stop()
            if self.training_only:
                raise TrainingMeasured
        if name == "training":
            self.sampler.start()
        self._current = name
        self.started[name] = now

    def epoch(self, entry: dict) -> None:
        pass

    def should_stop(self) -> bool:
        return False


@dataclass(frozen=True)
class Throughput:
    strategy: str
    trained_configs: int  # training configurations × epochs
    stage_seconds: float
    loop_seconds: float
    peak_rss_mb: float
    # 1-minute load average as training ended: above the core count, others slowed this run.
    load_average: float
    epochs: int = 1
    batch_size: int = 0
    # On a GPU: torch.cuda.max_memory_allocated of mace's process, and of the worker (this one).
    peak_gpu_mb: float | None = None
    worker_peak_gpu_mb: float | None = None

    @property
    def epoch_seconds(self) -> float:
        return self.loop_seconds / self.epochs

    @property
    def stage_rate(self) -> float:
        return self.trained_configs / self.stage_seconds

    @property
    def loop_rate(self) -> float:
        return self.trained_configs / self.loop_seconds


@dataclass(frozen=True)
class BenchData:
    files: JobFiles
    validation_configs: int
    mean_atoms: float  # per training configuration


def target_configurations(count: int, seed: int, system: str) -> list:
    if system == "Cu108":
        from bench.real_size import copper_cells

        return copper_cells(count, seed)
    return generate_target_dataset(count, seed=seed, system=system)


def write_data(folder: Path, configs: int, replay: int, system: str = "molecules") -> BenchData:
    """Target molecules or cells (train and a separate validation set, so mace trains on
    exactly `configs`) and replay structures: foundation-like H/C/N/O molecules, or CuAu cells."""
    train = target_configurations(configs, 5, system)
    validation = target_configurations(max(2, configs // 10), 6, system)
    if system == "molecules":
        pool = generate_foundation_configurations(8 * replay, seed=7)
        replay_set = [a for a in pool if set(a.get_chemical_symbols()) <= set(EMT_NONMETALS)]
    else:
        replay_set = generate_target_dataset(replay, seed=7, system="CuAu")
    if len(replay_set) < replay:
        raise RuntimeError(f"only {len(replay_set)} H/C/N/O replay structures, {replay} asked")
    files = JobFiles(
        train=write_extxyz(train, folder / "train.xyz"),
        valid=write_extxyz(validation, folder / "valid.xyz"),
        replay=write_extxyz(replay_set[:replay], folder / "replay.xyz"),
    )
    return BenchData(files, len(validation), sum(map(len, train)) / len(train))


def demo_foundation() -> FoundationModel:
    from core.registry.foundations import FoundationRegistry

    # The pinned demo pickle in the models folder, converted to its safe form once.
    return FoundationRegistry(demo_foundation_path().parent).resolve(DEMO_FOUNDATION_NAME)


def foundation_of(family: str) -> FoundationModel:
    """The demo foundation, or a stand-in of a published family built into the models folder."""
    if family == "demo":
        return demo_foundation()
    from core.registry.foundations import FoundationRegistry
    from core.registry.standin_foundations import RECIPES, ensure_standin

    registry = FoundationRegistry(models_folder())
    return registry.resolve(ensure_standin(registry, RECIPES[family], "float64"))


def strategy_spec(name: str, epochs: int, acknowledge: bool = False) -> JobSpec:
    strategy: dict = {"name": name}
    if name in REPLAY_STRATEGIES:
        strategy["replay"] = {"dataset": "replay"}
    # A stand-in's random weights are far from EMT's labels: the preflight says so, and the
    # benchmark goes on as a user who acknowledged it would.
    preflight = {"acknowledge": ["reference_mismatch", "energy_units", "forces_units"]}
    return JobSpec(
        train_dataset="train",
        strategy=strategy,
        hyperparameters={"max_num_epochs": epochs},
        preflight=preflight if acknowledge else {},
    )


def measure(
    spec: JobSpec,
    files: JobFiles,
    folder: Path,
    device: str,
    foundation: FoundationModel,
    training_only: bool = False,
) -> Throughput:
    clock = StageClock(training_only=training_only)
    peak_file = folder / "cuda-peak-bytes"
    os.environ[CUDA_PEAK_ENV] = str(peak_file)
    if torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    try:
        run_training(spec, files, foundation, folder, clock, device=device)
    except TrainingMeasured:
        pass
    finally:
        clock.sampler.stop()
        del os.environ[CUDA_PEAK_ENV]
    epochs = spec.hyperparameters.max_num_epochs
    trained = len(read_configurations(files.train)) * epochs
    return Throughput(
        spec.strategy.name,
        trained,
        # run_training notices that mace has finished within its 1 s poll: up to 1 s extra.
        stage_seconds=clock.seconds["training"],
        loop_seconds=epoch_loop_seconds(folder / "mace.log"),
        peak_rss_mb=clock.sampler.peak_mb,
        load_average=os.getloadavg()[0],
        epochs=epochs,
        peak_gpu_mb=int(peak_file.read_text()) / MB if peak_file.is_file() else None,
        worker_peak_gpu_mb=worker_gpu_peak_mb(device),
    )


def worker_gpu_peak_mb(device: str) -> float | None:
    """This process's peak allocated GPU memory since measure() reset it (0 if it never used
    the GPU: a scratch job's worker computes nothing there)."""
    if not device.startswith("cuda"):
        return None
    return torch.cuda.max_memory_allocated() / MB if torch.cuda.is_initialized() else 0.0


def _largest(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


def fastest(runs: list[Throughput]) -> Throughput:
    best = min(runs, key=lambda run: run.loop_seconds)
    return replace(
        best,
        peak_rss_mb=max(run.peak_rss_mb for run in runs),
        peak_gpu_mb=_largest([run.peak_gpu_mb for run in runs]),
        worker_peak_gpu_mb=_largest([run.worker_peak_gpu_mb for run in runs]),
    )


def epoch_loop_seconds(mace_log: Path) -> float:
    """Seconds between mace's "Started training" and "Training complete" log lines."""
    stamps = {}
    for line in mace_log.read_text().splitlines():
        for marker in (LOOP_STARTS, LOOP_ENDS):
            if marker in line:
                stamps[marker] = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
    if len(stamps) != 2:
        raise RuntimeError(f"{mace_log} lacks mace's {LOOP_STARTS!r} or {LOOP_ENDS!r} line")
    return (stamps[LOOP_ENDS] - stamps[LOOP_STARTS]).total_seconds()


@dataclass(frozen=True)
class Plan:
    configs: int
    epochs: int
    replay: int
    repeats: int
    strategies: list[str]
    device: str
    foundation: str = "demo"
    system: str = "molecules"
    training_only: bool = False

    def command(self, out: Path | None, table: Path | None = None) -> str:
        command = (
            f"python bench/strategy_throughput.py --configs {self.configs} --epochs {self.epochs}"
            f" --replay {self.replay} --repeats {self.repeats} --strategies "
            f"{','.join(self.strategies)} --device {self.device} --foundation {self.foundation}"
            f" --system {self.system}"
        )
        if self.training_only:
            command += " --training-only"
        if table is not None:
            command += f" --table {table}"
        return command + (f" --out {out}" if out is not None else "")

    @property
    def title(self) -> str:
        if self.foundation == "demo":
            return "Fine-tuning throughput per strategy"
        return f"Fine-tuning cost per strategy: {self.foundation} stand-in"


# Strategy name -> why its run failed: one failed strategy does not cost the others' numbers.
Failures = dict[str, str]
Report = Callable[[BenchData, list[Throughput], Failures], None]


def run(plan: Plan, report: Report | None = None) -> tuple[BenchData, list[Throughput], Failures]:
    """Every strategy in turn, `repeats` times round, so a busy spell hits several strategies;
    `report` gets the results so far after every run."""
    acknowledge = plan.foundation != "demo"
    specs = [strategy_spec(name, plan.epochs, acknowledge) for name in plan.strategies]
    runs: list[Throughput] = []
    failures: Failures = {}
    with tempfile.TemporaryDirectory(prefix="mlft-bench-") as tmp:
        data = write_data(Path(tmp), plan.configs, plan.replay, plan.system)
        foundation = foundation_of(plan.foundation)
        batch_sizes = edge_capped_batch_sizes(specs, data.files, foundation)
        for repeat in range(plan.repeats):
            for spec in specs:
                name = spec.strategy.name
                try:
                    measured = measure(
                        spec,
                        data.files,
                        Path(tmp) / f"{name}-{repeat}",
                        plan.device,
                        foundation,
                        plan.training_only,
                    )
                except Exception as error:  # noqa: BLE001 - reported in the table, run goes on
                    traceback.print_exc()
                    failures[name] = f"{type(error).__name__}: {error}"
                else:
                    runs.append(replace(measured, batch_size=batch_sizes[name]))
                if report is not None:
                    report(data, best_runs(plan, runs), failures)
    return data, best_runs(plan, runs), failures


def best_runs(plan: Plan, runs: list[Throughput]) -> list[Throughput]:
    measured = [name for name in plan.strategies if any(r.strategy == name for r in runs)]
    return [fastest([r for r in runs if r.strategy == name]) for name in measured]


def edge_capped_batch_sizes(
    specs: list[JobSpec], files: JobFiles, foundation: FoundationModel
) -> dict[str, int]:
    """The batch size each job trains at once MLFT_MAX_EDGES_PER_BATCH has capped it."""
    from core.registry.foundations import load_foundation

    model = load_foundation(foundation)
    configs = read_configurations(files.train)
    return {
        spec.strategy.name: batch_size_for_edges(spec, configs, model, edge_budget())[
            0
        ].hyperparameters.batch_size
        for spec in specs
    }


Rows = list[tuple[str, str]]


def table(plan: Plan, data: BenchData, results: list[Throughput]) -> Rows:
    batch_size = JobSpec(train_dataset="train").hyperparameters.batch_size
    rows = [
        ("foundation", plan.foundation),
        ("device / dtype", f"{plan.device} / float64"),
        ("cores", f"{os.cpu_count()}, shared with other work: see each run's load average"),
        (
            "training data",
            f"{plan.configs} {plan.system} configurations ({data.mean_atoms:.1f} "
            f"atoms on average), {plan.epochs} epochs, batch size {batch_size}",
        ),
        ("validation", f"{data.validation_configs} configurations, every epoch"),
        ("runs per strategy", f"{plan.repeats}, the fastest reported"),
        ("replay strategies", f"+ {plan.replay} replay structures per epoch, not counted"),
    ]
    for r in results:
        rows += [
            (f"{r.strategy}: seconds per epoch (epoch loop)", f"{r.epoch_seconds:.1f}"),
            (
                f"{r.strategy}: configurations/s, training stage / epoch loop",
                f"{r.stage_rate:.1f} / {r.loop_rate:.1f}",
            ),
            (
                f"{r.strategy}: training stage (s) / peak RSS (MB) / load average",
                f"{r.stage_seconds:.1f} / {r.peak_rss_mb:.0f} / {r.load_average:.1f}",
            ),
        ]
    return rows


def _megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def cost_table(
    plan: Plan, data: BenchData, results: list[Throughput], failures: Failures | None = None
) -> str:
    """One markdown row per strategy: what an epoch costs in time and memory on this device."""
    lines = [
        f"### Cost per strategy: {plan.foundation}, {plan.system}, {plan.device}",
        "",
        f"{plan.configs} training configurations ({data.mean_atoms:.1f} atoms on average), "
        f"{data.validation_configs} validation, {plan.epochs} epoch(s); replay strategies "
        f"replay {plan.replay} CuAu or H/C/N/O structures; batch size capped by "
        f"MLFT_MAX_EDGES_PER_BATCH={edge_budget()}. {machine_description()}, load average "
        f"{os.getloadavg()[0]:.1f} at the end. Repeat: `{plan.command(None, Path('FILE'))}`",
        "",
        "| strategy | batch size | s per epoch | training stage (s) | peak RSS, mace (MB) "
        "| peak GPU, mace (MB) | peak GPU, worker (MB) | load average |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.strategy} | {r.batch_size} | {r.epoch_seconds:.1f} | {r.stage_seconds:.1f} "
        f"| {r.peak_rss_mb:.0f} | {_megabytes(r.peak_gpu_mb)} "
        f"| {_megabytes(r.worker_peak_gpu_mb)} | {r.load_average:.1f} |"
        for r in results
    ]
    lines += [
        f"| {name} | failed: {reason[:300].replace('|', '/').replace(chr(10), ' ')} | | | | | | |"
        for name, reason in (failures or {}).items()
    ]
    return "\n".join(lines) + "\n"


def default_table_path() -> Path | None:
    """$OUT/strategy_costs.md when OUT names a folder (the GPU machine's results folder)."""
    out = os.environ.get("OUT")
    return Path(out) / "strategy_costs.md" if out else None


def main(argv: list[str] | None = None) -> list[Throughput]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--replay", type=int, default=50, help="replay set size")
    parser.add_argument("--repeats", type=int, default=2, help="runs per strategy, fastest kept")
    parser.add_argument(
        "--strategies", default=",".join(STRATEGY_NAMES), help="comma-separated, or all"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--small", action="store_true", help="2 strategies, 10 configs, training only (tests)"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", type=Path, default=default_table_path())
    parser.add_argument("--training-only", action="store_true")
    parser.add_argument(
        "--foundation",
        default="demo",
        help="demo, or a stand-in: mace-mp-0-small, mace-off23-small, mace-multihead",
    )
    parser.add_argument("--system", default="molecules", choices=SYSTEMS)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    strategies = list(STRATEGY_NAMES) if args.strategies == "all" else args.strategies.split(",")
    unknown = sorted(set(strategies) - set(STRATEGY_NAMES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {', '.join(STRATEGY_NAMES)}")
    plan = (
        Plan(10, 1, 10, 1, ["naive", "multihead_replay"], args.device, training_only=True)
        if args.small
        else Plan(
            args.configs,
            args.epochs,
            args.replay,
            args.repeats,
            strategies,
            args.device,
            args.foundation,
            args.system,
            args.training_only,
        )
    )

    def write_table(data: BenchData, results: list[Throughput], failures: Failures) -> None:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(cost_table(plan, data, results, failures))

    data, results, failures = run(plan, write_table if args.table is not None else None)
    rows = table(plan, data, results)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:{width}s} {value}")
    if args.table is not None:
        print(f"cost table written to {args.table}")
    if args.out is not None:
        write_section(args.out, plan.title, rows, command=plan.command(args.out))
    if failures:
        raise SystemExit(f"failed: {', '.join(failures)} (reasons in the table and above)")
    return results


if __name__ == "__main__":
    main()
