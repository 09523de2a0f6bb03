"""Registry of named foundation models.

A name resolves, in order, to `<models_dir>/<name>.model` (how offline sites and the demo model
work), or to a published MACE model fetched through mace-torch's own download-and-cache code.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import (
    ConflictError,
    FoundationModelBuildingError,
    FoundationModelUnavailableError,
    InvalidSpecError,
    NotFoundError,
)

logger = logging.getLogger(__name__)

DEMO_FOUNDATION_NAME = "mace-demo-emt"


def _mace_mp(variant: str) -> Callable[[], str]:
    def download() -> str:
        from mace.calculators.foundations_models import download_mace_mp_checkpoint

        return download_mace_mp_checkpoint(variant)

    return download


def _mace_off(size: str) -> Callable[[], str]:
    def download() -> str:
        import torch
        from mace.calculators.foundations_models import mace_off
        from mace.tools.utils import get_cache_dir

        # mace_off downloads into mace's cache and returns the module; keep a pickled copy so
        # later jobs load it like any other foundation.
        path = Path(get_cache_dir()) / f"mlft-mace-off23-{size}.model"
        if not path.is_file():
            torch.save(mace_off(model=size, device="cpu", return_raw_model=True), path)
        return str(path)

    return download


PUBLISHED: dict[str, Callable[[], str]] = {
    "mace-mp-0-small": _mace_mp("small"),
    "mace-mp-0-medium": _mace_mp("medium"),
    "mace-mp-0-large": _mace_mp("large"),
    "mace-mp-0b3-medium": _mace_mp("medium-0b3"),
    "mace-mpa-0-medium": _mace_mp("medium-mpa-0"),
    "mace-omat-0-small": _mace_mp("small-omat-0"),
    "mace-omat-0-medium": _mace_mp("medium-omat-0"),
    "mace-off23-small": _mace_off("small"),
    "mace-off23-medium": _mace_off("medium"),
    "mace-off23-large": _mace_off("large"),
}


@dataclass(frozen=True)
class FoundationModel:
    name: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class FoundationListing:
    name: str
    source: str  # "local" (a file in models_dir) or "published" (downloaded on first use)
    available: bool
    # "ready", or "building" with the build's progress (the demo model on first start).
    status: str = "ready"
    progress: dict[str, Any] | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Loading a pickled mace model in several threads at once fails inside e3nn's code generation
# ("CURRENT_PATCHER is None"), which concurrent first requests to one API process would do.
_MODEL_LOAD_LOCK = threading.Lock()


def model_load_lock() -> threading.Lock:
    """Held while an API process unpickles a mace model (see above)."""
    return _MODEL_LOAD_LOCK


@lru_cache(maxsize=16)
def _elements_of_model_file(path: str, _modified: int) -> tuple[str, ...]:
    import torch
    from ase.data import chemical_symbols

    # Registered foundations are trusted pickles (only admins add them).
    with _MODEL_LOAD_LOCK:
        model = torch.load(path, map_location="cpu", weights_only=False)
    return tuple(chemical_symbols[int(z)] for z in model.atomic_numbers)


FOUNDATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _pin_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".sha256")


@lru_cache(maxsize=64)
def _verified_sha256(path: str, _modified: int) -> str:
    """The file's sha256, checked against its registration pin when it has one.

    A pinned model whose bytes changed is refused before anything unpickles it: loading a model
    runs its code.
    """
    model_path = Path(path)
    sha256 = file_sha256(model_path)
    pin = _pin_path(model_path)
    if pin.is_file() and pin.read_text().strip() != sha256:
        raise FoundationModelUnavailableError(
            f"foundation model file {model_path.name} changed since it was registered "
            f"(sha256 {sha256}, registered {pin.read_text().strip()}); refusing to load it"
        )
    return sha256


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


class FoundationRegistry:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir

    def local_names(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(path.stem for path in self.models_dir.glob("*.model"))

    def listing(self) -> list[FoundationListing]:
        local = self.local_names()
        building = [
            FoundationListing(name, "local", False, "building", progress)
            for name, progress in self.builds().items()
            if name not in local
        ]
        published = [name for name in PUBLISHED if name not in local]
        return (
            [FoundationListing(name, "local", True) for name in local]
            + building
            + [FoundationListing(name, "published", False) for name in published]
        )

    def builds(self) -> dict[str, dict[str, Any]]:
        """Models being built into models_dir by a live process, with their progress."""
        if not self.models_dir.is_dir():
            return {}
        found = {}
        for marker in self.models_dir.glob("*.model.building"):
            model_path = marker.with_name(marker.name.removesuffix(".building"))
            progress = build_progress(model_path)
            if progress is not None and not model_path.is_file():
                found[model_path.stem] = progress
        return found

    def ensure_not_building(self, name: str) -> None:
        """503 for a model still being built: it will exist in a minute or two."""
        progress = self.builds().get(name)
        if progress is not None:
            raise FoundationModelBuildingError(
                f"foundation model {name!r} is being built (epoch {progress['epochs_done']}/"
                f"{progress['max_epochs']}, {progress['elapsed_seconds']:.0f} s so far); submit "
                "again once GET /foundation-models lists it as ready"
            )

    def exists(self, name: str) -> bool:
        return name in PUBLISHED or (self.models_dir / f"{name}.model").is_file()

    def local_elements(self, name: str) -> list[str] | None:
        """Elements of a local foundation model; None when it is only published (not fetched)."""
        path = self.models_dir / f"{name}.model"
        if not path.is_file():
            return None
        modified = path.stat().st_mtime_ns
        _verified_sha256(str(path), modified)
        return list(_elements_of_model_file(str(path), modified))

    def register(self, name: str, upload: Path) -> FoundationModel:
        """Add an uploaded model under a name, pinned by its sha256 (admins only: a pickle)."""
        if not FOUNDATION_NAME.fullmatch(name):
            raise InvalidSpecError(
                f"foundation model name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if self.exists(name):
            raise ConflictError(f"a foundation model named {name!r} exists already")
        sha256 = file_sha256(upload)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        target = self.models_dir / f"{name}.model"
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(upload, partial)
        # The pin first: a model file never exists here without the hash it must have.
        _pin_path(target).write_text(sha256 + "\n")
        partial.replace(target)
        logger.info("foundation %s registered sha256=%s", name, sha256)
        return FoundationModel(name, target, sha256)

    def resolve(self, name: str) -> FoundationModel:
        local = self.models_dir / f"{name}.model"
        if local.is_file():
            return FoundationModel(
                name, local, _verified_sha256(str(local), local.stat().st_mtime_ns)
            )
        if name not in PUBLISHED:
            known = ", ".join(self.local_names() + list(PUBLISHED))
            raise NotFoundError(f"unknown foundation model {name!r}; known: {known}")
        try:
            path = Path(PUBLISHED[name]())
        except Exception as error:  # the download path raises anything from URLError to OSError
            raise FoundationModelUnavailableError(
                f"foundation model {name!r} could not be downloaded ({error}); place the file "
                f"at {local} to use it offline"
            ) from error
        logger.info("foundation %s resolved to %s", name, path)
        return FoundationModel(name, path, file_sha256(path))
