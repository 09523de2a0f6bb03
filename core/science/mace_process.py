"""Run mace-torch's own training entry point in a child process and follow its progress.

A child process keeps mace's global state (logging, default dtype) out of the worker, and lets a
cancelled job be stopped at once.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import TrainingFailedError
from core.service.processes import stop_process
from core.service.stages import WorkStopped

EpochCallback = Callable[[dict[str, Any]], None]
StopCheck = Callable[[], bool]


# mace's entry point, in a child that dies with its worker: a killed worker must not leave mace
# training on and writing into a job that another worker resumes. Linux asks the kernel
# (PR_SET_PDEATHSIG); the parent check covers a worker that died before the child got there.
# MLFT_RUNG_FOLDER and MLFT_RUNGS (a sweep's successive halving, core.science.halving): before
# the epoch that follows a rung, mace waits for the verdict file the worker writes once it read
# the rung's validation record; "stop" ends mace's training loop there, and run_train goes on as
# after a patience stop (best checkpoint loaded, model saved, converted back to e3nn).
# MLFT_BENCH_CUDA_PEAK_FILE (benchmarks only, bench/strategy_throughput.py): the file where the
# process writes torch.cuda.max_memory_allocated() as it exits, since only it can read its own.
_CHILD = """
import ctypes, os, runpy, signal, sys
parent = int(sys.argv.pop(1))
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != parent:
    sys.exit("mlft: the worker that started this training process is gone")
peak_file = os.environ.get("MLFT_BENCH_CUDA_PEAK_FILE")
if peak_file:
    import atexit, torch
    def record_cuda_peak():
        if torch.cuda.is_initialized():
            with open(peak_file, "w") as stream:
                stream.write(str(torch.cuda.max_memory_allocated()))
    atexit.register(record_cuda_peak)
rung_folder = os.environ.get("MLFT_RUNG_FOLDER")
if rung_folder:
    import time, mace.tools
    rungs = {int(epochs) for epochs in os.environ["MLFT_RUNGS"].split(",")}
    wait_s = float(os.environ.get("MLFT_RUNG_WAIT_S", "300"))
    epoch_module = sys.modules["mace.tools.train"]
    one_epoch, whole_training = epoch_module.train_one_epoch, mace.tools.train
    class StoppedEarly(Exception):
        pass
    def train_one_epoch(*args, **kwargs):
        epoch = kwargs.get("epoch")
        if epoch in rungs:
            verdict = os.path.join(rung_folder, f"after-{epoch}")
            deadline = time.monotonic() + wait_s
            while not os.path.exists(verdict) and time.monotonic() < deadline:
                time.sleep(0.1)
            if os.path.exists(verdict) and open(verdict).read().strip() == "stop":
                raise StoppedEarly
        return one_epoch(*args, **kwargs)
    def train(*args, **kwargs):
        try:
            whole_training(*args, **kwargs)
        except StoppedEarly:
            print("mlft: stopped early at a rung of the sweep's successive halving", flush=True)
    epoch_module.train_one_epoch = train_one_epoch
    mace.tools.train = train
runpy.run_module("mace.cli.run_train", run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class RungPlan:
    """Where the verdicts of a job's rungs go, and after how many epochs each is given."""

    folder: Path
    after_epochs: tuple[int, ...]

    def environment(self) -> dict[str, str]:
        return {
            "MLFT_RUNG_FOLDER": str(self.folder),
            "MLFT_RUNGS": ",".join(str(epochs) for epochs in self.after_epochs),
        }

    def give_verdict(self, after_epochs: int, stop: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".after-{after_epochs}"
        partial.write_text("stop" if stop else "go on", encoding="utf-8")
        partial.replace(self.folder / f"after-{after_epochs}")  # whole, or not there yet

    def stopped(self) -> bool:
        return any(
            path.read_text(encoding="utf-8").strip() == "stop"
            for path in self.folder.glob("after-*")
        )


class TrainingCancelled(WorkStopped):
    """Raised when should_stop() turned true while mace was training."""


@dataclass
class ResultsFollower:
    """Reads the JSON lines mace appends to its results file, each line once."""

    path: Path
    offset: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    # Optimizer-step time per epoch, summed from mace's "opt" records.
    step_seconds: dict[Any, float] = field(default_factory=dict)

    def new_entries(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with self.path.open(encoding="utf-8") as stream:
            stream.seek(self.offset)
            text = stream.read()
        complete, _, _partial = text.rpartition("\n")
        if not complete:
            return []
        self.offset += len(complete) + 1
        entries = [json.loads(line) for line in complete.splitlines() if line.strip()]
        self.seen += entries
        return entries


# mace's head names, as people read them: the user's data and the replay data.
# Keyed by what a log line carries, which may be no head at all (None: shown as it came).
HEAD_NAMES: dict[str | None, str] = {"Default": "target", "pt_head": "replay"}


def epoch_entry(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The validation record of one epoch, in the units people read (meV/atom, meV/Å)."""
    if raw.get("mode") != "eval":
        return None
    entry: dict[str, Any] = {
        "epoch": raw.get("epoch"),
        "head": HEAD_NAMES.get(raw.get("head"), raw.get("head")),
        "loss": raw.get("loss"),
    }
    if raw.get("rmse_e_per_atom") is not None:
        entry["valid_energy_rmse_mev_per_atom"] = raw["rmse_e_per_atom"] * 1e3
    if raw.get("rmse_f") is not None:
        entry["valid_forces_rmse_mev_per_a"] = raw["rmse_f"] * 1e3
    return entry


def run_mace_training(
    argv: list[str],
    results_file: Path,
    log_file: Path,
    *,
    on_epoch: EpochCallback,
    should_stop: StopCheck,
    poll_seconds: float = 1.0,
    rungs: RungPlan | None = None,
) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # A resumed run appends to the results of the run before it; only its new lines count.
    follower = ResultsFollower(results_file, offset=_size(results_file))
    with log_file.open("ab") as log:
        environment = {**os.environ, **(rungs.environment() if rungs else {})}
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(os.getpid()), *argv],
            stdout=log,
            stderr=log,
            env=environment,
        )
        try:
            while process.poll() is None:
                time.sleep(poll_seconds)
                _report(follower, on_epoch)
                if should_stop():
                    raise TrainingCancelled
        finally:
            stop_process(process)
    _report(follower, on_epoch)
    if process.returncode != 0:
        raise TrainingFailedError(
            f"mace-torch training exited with code {process.returncode}: {_last_error(log_file)}"
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _report(follower: ResultsFollower, on_epoch: EpochCallback) -> None:
    for raw in follower.new_entries():
        if raw.get("mode") == "opt" and isinstance(raw.get("time"), int | float):
            epoch = raw.get("epoch")
            follower.step_seconds[epoch] = follower.step_seconds.get(epoch, 0.0) + raw["time"]
        entry = epoch_entry(raw)
        if entry is None:
            continue
        if entry["epoch"] in follower.step_seconds:
            # The epoch's training time, without validation: what /metrics reports.
            entry["seconds"] = round(follower.step_seconds[entry["epoch"]], 3)
        on_epoch(entry)


def _last_error(log_file: Path, lines: int = 3) -> str:
    text = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    meaningful = [line for line in text if line.strip()]
    return " | ".join(meaningful[-lines:]) if meaningful else "no output"
