"""Fine-tuning throughput per strategy: configurations trained per second and the peak memory of
mace-torch's training process, every strategy on the same data and device in one run.

Each strategy runs through core.training.run_training as a worker runs it: E0 re-estimation,
mace-torch in a child process, the checks on the delivered model. Configurations/s is training
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

With --foundation set to a stand-in family (core.standin_foundations: mace-mp-0-small,
mace-off23-small, mace-multihead) the same runs use a model of that published architecture, and
--system CuAu trains on 4- and 8-atom CuAu cells instead of molecules (replayed on other CuAu
cells): the per-epoch cost of each strategy at that model size.

Usage: python bench/strategy_throughput.py [--configs 100] [--epochs 10] [--replay 50]
       [--repeats 2] [--strategies naive,lora] [--device cpu] [--small] [--out FILE]
       [--foundation mace-mp-0-small] [--system CuAu]
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_load import descendant_pids, peak_rss_mb  # noqa: E402
from bench.common import demo_foundation_path, write_section  # noqa: E402
from core.datasets import read_configurations  # noqa: E402
from core.demo_data import (  # noqa: E402
    EMT_NONMETALS,
    generate_foundation_configurations,
    generate_target_dataset,
    write_extxyz,
)
from core.foundations import DEMO_FOUNDATION_NAME, FoundationModel, file_sha256  # noqa: E402
from core.spec import JobSpec  # noqa: E402
from core.strategy_table import REPLAY_STRATEGIES, STRATEGY_NAMES  # noqa: E402
from core.training import JobFiles, run_training  # noqa: E402

# mace-torch 0.3.16 logs these around its epoch loop, with millisecond timestamps.
LOOP_STARTS = "Started training"
LOOP_ENDS = "Training complete"
# VmHWM only grows, so sampling often enough to catch the process before it exits is all it needs.
SAMPLE_SECONDS = 0.2


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
    _current: str | None = None

    def stage(self, name: str) -> None:
        now = time.perf_counter()
        if self._current is not None:
            self.seconds[self._current] = now - self.started[self._current]
        if self._current == "training":
            self.sampler.stop()
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


def write_data(folder: Path, configs: int, replay: int, system: str = "molecules") -> BenchData:
    """Target molecules or CuAu cells (train and a separate validation set, so mace trains on
    exactly `configs`) and replay structures: foundation-like H/C/N/O molecules, or other cells."""
    train = generate_target_dataset(configs, seed=5, system=system)
    validation = generate_target_dataset(max(2, configs // 10), seed=6, system=system)
    if system == "molecules":
        pool = generate_foundation_configurations(8 * replay, seed=7)
        replay_set = [a for a in pool if set(a.get_chemical_symbols()) <= set(EMT_NONMETALS)]
    else:
        replay_set = generate_target_dataset(replay, seed=7, system=system)
    if len(replay_set) < replay:
        raise RuntimeError(f"only {len(replay_set)} H/C/N/O replay structures, {replay} asked")
    files = JobFiles(
        train=write_extxyz(train, folder / "train.xyz"),
        valid=write_extxyz(validation, folder / "valid.xyz"),
        replay=write_extxyz(replay_set[:replay], folder / "replay.xyz"),
    )
    return BenchData(files, len(validation), sum(map(len, train)) / len(train))


def demo_foundation() -> FoundationModel:
    path = demo_foundation_path()
    return FoundationModel(DEMO_FOUNDATION_NAME, path, file_sha256(path))


def foundation_of(family: str) -> FoundationModel:
    """The demo foundation, or a stand-in of a published family built into the models folder."""
    if family == "demo":
        return demo_foundation()
    from core.foundations import FoundationRegistry
    from core.standin_foundations import RECIPES, ensure_standin

    registry = FoundationRegistry(demo_foundation_path().parent)
    return registry.resolve(ensure_standin(registry, RECIPES[family], "float64"))


def strategy_spec(name: str, epochs: int) -> JobSpec:
    strategy: dict = {"name": name}
    if name in REPLAY_STRATEGIES:
        strategy["replay"] = {"dataset": "replay"}
    return JobSpec(
        train_dataset="train", strategy=strategy, hyperparameters={"max_num_epochs": epochs}
    )


def measure(
    spec: JobSpec, files: JobFiles, folder: Path, device: str, foundation: FoundationModel
) -> Throughput:
    clock = StageClock()
    try:
        run_training(spec, files, foundation, folder, clock, device=device)
    finally:
        clock.sampler.stop()
    trained = len(read_configurations(files.train)) * spec.hyperparameters.max_num_epochs
    return Throughput(
        spec.strategy.name,
        trained,
        # run_training notices that mace has finished within its 1 s poll: up to 1 s extra.
        stage_seconds=clock.seconds["training"],
        loop_seconds=epoch_loop_seconds(folder / "mace.log"),
        peak_rss_mb=clock.sampler.peak_mb,
        load_average=os.getloadavg()[0],
    )


def fastest(runs: list[Throughput]) -> Throughput:
    best = min(runs, key=lambda run: run.loop_seconds)
    return replace(best, peak_rss_mb=max(run.peak_rss_mb for run in runs))


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

    def command(self, out: Path) -> str:
        return (
            f"python bench/strategy_throughput.py --configs {self.configs} --epochs {self.epochs}"
            f" --replay {self.replay} --repeats {self.repeats} --strategies "
            f"{','.join(self.strategies)} --device {self.device} --foundation {self.foundation}"
            f" --system {self.system} --out {out}"
        )

    @property
    def title(self) -> str:
        if self.foundation == "demo":
            return "Fine-tuning throughput per strategy"
        return f"Fine-tuning cost per strategy: {self.foundation} stand-in"


def run(plan: Plan) -> tuple[BenchData, list[Throughput]]:
    """Every strategy in turn, `repeats` times round, so a busy spell hits several strategies."""
    specs = [strategy_spec(name, plan.epochs) for name in plan.strategies]
    with tempfile.TemporaryDirectory(prefix="mlft-bench-") as tmp:
        data = write_data(Path(tmp), plan.configs, plan.replay, plan.system)
        foundation = foundation_of(plan.foundation)
        runs = [
            measure(
                spec,
                data.files,
                Path(tmp) / f"{spec.strategy.name}-{repeat}",
                plan.device,
                foundation,
            )
            for repeat in range(plan.repeats)
            for spec in specs
        ]
    return data, [fastest([r for r in runs if r.strategy == name]) for name in plan.strategies]


Rows = list[tuple[str, str]]


def table(plan: Plan, data: BenchData, results: list[Throughput]) -> Rows:
    batch_size = JobSpec(train_dataset="train").hyperparameters.batch_size
    rows = [
        ("foundation", plan.foundation),
        ("device / dtype", f"{plan.device} / float64"),
        ("cores", f"{os.cpu_count()}, shared with other work: see each run's load average"),
        ("training data", f"{plan.configs} {plan.system} configurations ({data.mean_atoms:.1f} "
                          f"atoms on average), {plan.epochs} epochs, batch size {batch_size}"),
        ("validation", f"{data.validation_configs} configurations, every epoch"),
        ("runs per strategy", f"{plan.repeats}, the fastest reported"),
        ("replay strategies", f"+ {plan.replay} replay structures per epoch, not counted"),
    ]
    for r in results:
        rows += [
            (f"{r.strategy}: seconds per epoch (epoch loop)",
             f"{r.loop_seconds / plan.epochs:.1f}"),
            (f"{r.strategy}: configurations/s, training stage / epoch loop",
             f"{r.stage_rate:.1f} / {r.loop_rate:.1f}"),
            (f"{r.strategy}: training stage (s) / peak RSS (MB) / load average",
             f"{r.stage_seconds:.1f} / {r.peak_rss_mb:.0f} / {r.load_average:.1f}"),
        ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--replay", type=int, default=50, help="replay set size")
    parser.add_argument("--repeats", type=int, default=2, help="runs per strategy, fastest kept")
    parser.add_argument("--strategies", default=",".join(STRATEGY_NAMES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--small", action="store_true", help="2 strategies, 10 configs (tests)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--foundation", default="demo", help="demo, or a stand-in: mace-mp-0-small, "
        "mace-off23-small, mace-multihead"
    )
    parser.add_argument("--system", default="molecules", choices=("molecules", "CuAu"))
    args = parser.parse_args(argv)
    plan = (
        Plan(10, 1, 10, 1, ["naive", "multihead_replay"], args.device)
        if args.small
        else Plan(args.configs, args.epochs, args.replay, args.repeats,
                  args.strategies.split(","), args.device, args.foundation, args.system)
    )
    data, results = run(plan)
    rows = table(plan, data, results)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:{width}s} {value}")
    if args.out is not None:
        write_section(args.out, plan.title, rows, command=plan.command(args.out))


if __name__ == "__main__":
    main()
