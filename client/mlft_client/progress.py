"""A job's progress on a terminal, drawn by rich: a status line (state, stage, the latest
validation errors), the training epochs with elapsed time and an ETA from the job's cost
prediction, and each evaluation stage (MD steps, RSS structures) as its own bar.

Away from a terminal (a log file, CI) it writes one line per change instead of redrawing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from mlft_client.sse import JobEvent

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
# Long evaluation stages count their work in their name: "md 1/3 120/800 steps" (MD run 1 of 3,
# 120 of 800 steps), "rss 12/50" and "rss foundation 12/50" (relaxed structures).
COUNTED_STAGE = re.compile(r"^(?P<name>.*?)\s+(?P<done>\d+)/(?P<total>\d+)(?:\s+(?P<unit>\w+))?$")


@dataclass(frozen=True)
class StageCount:
    name: str
    done: int
    total: int
    unit: str


def counted_stage(stage: str | None, steps: dict[str, Any] | None = None) -> StageCount | None:
    """How far a long stage is, from the event's `steps` when the server sends it, otherwise
    from the stage's name."""
    if steps and steps.get("total"):
        return StageCount(
            str(steps.get("stage") or stage),
            int(steps.get("done", 0)),
            int(steps["total"]),
            str(steps.get("unit") or "steps"),
        )
    match = COUNTED_STAGE.match(stage or "")
    if match is None or not match["name"]:
        return None
    name = match["name"]
    unit = match["unit"] or ("structures" if name.startswith("rss") else "steps")
    return StageCount(name, int(match["done"]), int(match["total"]), unit)


class RemainingColumn(ProgressColumn):
    """Time left: measured once the bar has moved while watched, until then the job's cost
    prediction (seconds per epoch, from the preflight's probe) times what is left."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text("done", style="progress.remaining")
        remaining = task.time_remaining
        per_unit = task.fields.get("seconds_per_unit")
        if remaining is None and per_unit and task.total is not None:
            remaining = (task.total - task.completed) * per_unit
        if remaining is None:
            return Text("eta -:--:--", style="progress.remaining")
        return Text(f"eta {timedelta(seconds=round(remaining))}", style="progress.remaining")


class JobProgress:
    """Fed the job once (`start`), then its events (`update`), then the job again (`finish`)."""

    def __init__(self, job_id: str, console: Console | None = None) -> None:
        self.job_id = job_id
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.state = "queued"
        self.stage: str | None = None
        self.max_epochs: int | None = None
        self.epochs: set[int] = set()
        self.reported_epochs = 0
        self.latest: dict[str, float] = {}
        self.seconds_per_epoch: float | None = None
        self.bars = Progress(
            TextColumn("{task.description}", style="progress.description"),
            BarColumn(bar_width=24),
            TextColumn("{task.completed:.0f}/{task.total:.0f} {task.fields[unit]}"),
            TimeElapsedColumn(),
            RemainingColumn(),
            console=self.console,
        )
        self.training: TaskID | None = None
        self.stage_bars: dict[str, TaskID] = {}
        self._display: Live | None = None
        self._shown = ""

    @property
    def wants_cost(self) -> bool:
        return self.seconds_per_epoch is None and self.state not in TERMINAL_STATES

    def start(self, job: dict[str, Any]) -> None:
        self.learn(job)
        if self.live and job["state"] not in TERMINAL_STATES:
            self._display = Live(self._renderable(), console=self.console, refresh_per_second=4)
            self._display.start()
        elif job["state"] not in TERMINAL_STATES:
            self._changed()

    def learn(self, job: dict[str, Any]) -> None:
        """What only the job's row says: its epochs so far, latest errors and cost prediction."""
        progress = job.get("progress") or {}
        self._state(job["state"], progress.get("stage"), progress.get("steps"))
        self.max_epochs = progress.get("max_epochs", self.max_epochs)
        self.reported_epochs = max(self.reported_epochs, progress.get("epochs_done") or 0)
        if progress.get("latest"):
            self._record_epoch(progress["latest"])
        predicted = (job.get("cost") or {}).get("predicted") or {}
        if predicted.get("seconds_per_epoch"):
            self.seconds_per_epoch = float(predicted["seconds_per_epoch"])
        self._sync_training()

    def update(self, event: JobEvent) -> None:
        if event.name == "state":
            data = event.data
            self.max_epochs = data.get("max_epochs", self.max_epochs)
            self.reported_epochs = max(self.reported_epochs, data.get("epochs_done") or 0)
            self._state(data["state"], data.get("stage"), data.get("steps"))
        elif event.name == "epoch":
            self._record_epoch(event.data)
        else:
            return
        self._sync_training()
        self._changed()

    def finish(self, job: dict[str, Any]) -> None:
        """The final state, shown once whether or not the job was followed live."""
        self.learn(job)
        if self._display is not None:
            self._display.update(self._renderable())
            self._display.stop()
            self._display = None
        else:
            self._changed()

    def close(self) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None

    def status(self) -> str:
        parts = [f"job {self.job_id} {self.state}"]
        if self.stage and counted_stage(self.stage) is None:
            parts.append(self.stage)
        if not self.live and self.max_epochs:
            parts.append(f"{self.epochs_done}/{self.max_epochs} epochs")
        if "energy" in self.latest:
            parts.append(f"E {self.latest['energy']:.2f} meV/atom")
        if "forces" in self.latest:
            parts.append(f"F {self.latest['forces']:.1f} meV/Å")
        if not self.live and (count := counted_stage(self.stage)):
            parts.append(f"{count.name} {count.done}/{count.total} {count.unit}")
        return " · ".join(parts)

    @property
    def epochs_done(self) -> int:
        return max(self.reported_epochs, len(self.epochs))

    def _state(self, state: str, stage: str | None, steps: dict[str, Any] | None) -> None:
        self.state, self.stage = state, stage
        count = counted_stage(stage, steps)
        for name, task in self.stage_bars.items():
            if count is None or name != count.name:
                self.bars.stop_task(task)
        if count is None:
            return
        if count.name not in self.stage_bars:
            self.stage_bars[count.name] = self.bars.add_task(
                count.name, total=count.total, unit=count.unit
            )
        task = self.stage_bars[count.name]
        self.bars.update(task, completed=count.done, total=count.total)

    def _sync_training(self) -> None:
        if not self.max_epochs:
            return
        if self.training is None:
            self.training = self.bars.add_task(
                "training", total=self.max_epochs, unit="epochs", start=False
            )
        self.bars.update(
            self.training,
            total=self.max_epochs,
            completed=min(self.epochs_done, self.max_epochs),
            seconds_per_unit=self.seconds_per_epoch,
        )
        training_now = self.stage == "training" and self.state == "running"
        task = self.bars.tasks[self.training]
        if training_now and not task.started:
            self.bars.start_task(self.training)
        elif not training_now and task.started and task.stop_time is None:
            self.bars.stop_task(self.training)

    def _record_epoch(self, entry: dict[str, Any]) -> None:
        # Replay jobs log a second head per epoch; progress and errors follow the target head.
        if entry.get("head") == "replay":
            return
        # mace's "epoch None" record is the validation error before any training.
        if entry.get("epoch") is not None:
            self.epochs.add(entry["epoch"])
        if entry.get("valid_energy_rmse_mev_per_atom") is not None:
            self.latest["energy"] = entry["valid_energy_rmse_mev_per_atom"]
        if entry.get("valid_forces_rmse_mev_per_a") is not None:
            self.latest["forces"] = entry["valid_forces_rmse_mev_per_a"]

    def _renderable(self) -> Group:
        return Group(Text(self.status(), no_wrap=True, overflow="ellipsis"), self.bars)

    def _changed(self) -> None:
        if self._display is not None:
            self._display.update(self._renderable())
            return
        line = self.status()
        if line != self._shown:
            self.console.print(line, no_wrap=True, overflow="ellipsis", highlight=False)
            self._shown = line
