"""Pins and build markers beside model files in a models folder: a file is served only with the
sha256 pin its operator (or registration) wrote beside it; a model being built says so."""

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from core.registry.catalogue import file_sha256


def pin_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".sha256")


def is_regular_file(path: Path) -> bool:
    """True for a regular file itself; a symlink is never followed."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def pin_model_file(path: Path, *, replace: bool = False) -> str:
    """Register a model file its operator placed in the models folder (the demo model's build):
    write the sha256 pin beside it, unless it has one already (or `replace`)."""
    pin = pin_path(path)
    if replace or not is_regular_file(pin):
        pin.write_text(file_sha256(path) + "\n")
    return pin.read_text().strip()


def building_marker(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".building")


def build_progress(model_path: Path) -> dict[str, Any] | None:
    """The build's progress while `model_path` is being built by a live process, else None:
    `{"epochs_done", "max_epochs", "elapsed_seconds"}` from mace's own results file."""
    marker = building_marker(model_path)
    try:
        state = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not _process_alive(int(state["pid"])):
        return None  # a build that died; the next start builds again
    results = sorted(Path(state["work_dir"]).glob("results/*_train.txt"))
    epochs = set()
    for line in results[0].read_text().splitlines() if results else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("mode") == "eval" and record.get("epoch") is not None:
            epochs.add(record["epoch"])
    return {
        "epochs_done": len(epochs),
        "max_epochs": int(state["max_epochs"]),
        "elapsed_seconds": round(time.time() - float(state["started_at"]), 1),
    }


def mark_building(marker: Path, work_dir: Path, max_epochs: int) -> None:
    """Say that this process is building the model `marker` belongs to (build_progress)."""
    state = {
        "pid": os.getpid(),
        "started_at": time.time(),
        "work_dir": str(work_dir.resolve()),
        "max_epochs": max_epochs,
    }
    marker.write_text(json.dumps(state))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
