"""A one-line progress bar for a job: state, stage, epochs and the latest validation errors."""

import sys
from typing import TextIO

from mlft_client.sse import JobEvent

BAR_WIDTH = 24


class ProgressBar:
    """Redrawn in place on a terminal; elsewhere (a log file, CI) one line per change."""

    def __init__(self, job_id: str, stream: TextIO | None = None) -> None:
        self.job_id = job_id
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.state = "queued"
        self.stage: str | None = None
        self.max_epochs: int | None = None
        self.reported_epochs = 0
        self.seen_epochs: set[int] = set()
        self.latest: dict[str, float] = {}
        self._shown = ""

    def update(self, event: JobEvent) -> None:
        if event.name == "state":
            self.state = event.data["state"]
            self.stage = event.data.get("stage")
            self.max_epochs = event.data.get("max_epochs", self.max_epochs)
            self.reported_epochs = event.data.get("epochs_done", self.reported_epochs)
        elif event.name == "epoch":
            self._record_epoch(event.data)
        else:
            return
        self._draw(self.render())

    def render(self) -> str:
        parts = [f"job {self.job_id} {self.state}"]
        if self.stage:
            parts.append(self.stage)
        if self.max_epochs:
            done = max(self.reported_epochs, len(self.seen_epochs))
            filled = BAR_WIDTH * min(done, self.max_epochs) // self.max_epochs
            parts.append(
                f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{self.max_epochs} epochs"
            )
        if "energy" in self.latest:
            parts.append(f"E {self.latest['energy']:.2f} meV/atom")
        if "forces" in self.latest:
            parts.append(f"F {self.latest['forces']:.1f} meV/Å")
        return " · ".join(parts)

    def close(self) -> None:
        if self.live and self._shown:
            self.stream.write("\n")
            self.stream.flush()

    def _record_epoch(self, entry: dict) -> None:
        # Replay jobs log a second head per epoch; progress and errors follow the target head.
        if entry.get("head") == "replay":
            return
        # mace's "epoch None" record is the validation error before any training.
        if entry.get("epoch") is not None:
            self.seen_epochs.add(entry["epoch"])
        if entry.get("valid_energy_rmse_mev_per_atom") is not None:
            self.latest["energy"] = entry["valid_energy_rmse_mev_per_atom"]
        if entry.get("valid_forces_rmse_mev_per_a") is not None:
            self.latest["forces"] = entry["valid_forces_rmse_mev_per_a"]

    def _draw(self, line: str) -> None:
        if line == self._shown:
            return
        if self.live:
            padding = " " * max(0, len(self._shown) - len(line))
            self.stream.write(f"\r{line}{padding}")
        else:
            self.stream.write(f"{line}\n")
        self.stream.flush()
        self._shown = line
