"""Registry of named foundation models, and the only place a model file is unpickled.

A name is a registry key, never a path. It resolves, in order, to a model registered with its
sha256 pin (POST /foundation-models, a pinned `<models_dir>/<name>.model` such as the demo
model's build), or to a published MACE model fetched through mace-torch's download-and-cache code.
In the service, registered and downloaded files are shared through artifact storage and pinned in
the database (core/registry/foundation_store.py), so every worker on every machine sees them.
Every load checks the bytes against the pin before unpickling them: loading a model runs its code.
"""

import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field

from core.errors import (
    ArtifactMissingError,
    ConflictError,
    FoundationModelBuildingError,
    FoundationModelUnavailableError,
    InvalidModelFileError,
    InvalidSpecError,
    NotFoundError,
)

if TYPE_CHECKING:
    import torch

    from core.registry.foundation_store import FoundationStore, StoredFoundation

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


# Where each published model comes from: mace-torch's URL table (family, key), so whether it is
# cached here can be told without downloading it.
PUBLISHED_SOURCES: dict[str, tuple[str, str]] = {
    name: ("off" if name.startswith("mace-off23-") else "mp", key)
    for name, key in {
        "mace-mp-0-small": "small",
        "mace-mp-0-medium": "medium",
        "mace-mp-0-large": "large",
        "mace-mp-0b3-medium": "medium-0b3",
        "mace-mpa-0-medium": "medium-mpa-0",
        "mace-omat-0-small": "small-omat-0",
        "mace-omat-0-medium": "medium-omat-0",
        "mace-off23-small": "small",
        "mace-off23-medium": "medium",
        "mace-off23-large": "large",
    }.items()
}


def published_source(name: str) -> tuple[str, Path]:
    """The download URL of a published model and where mace-torch (or mlft) caches it."""
    from mace.calculators.foundations_models import mace_mp_urls, mace_off_urls
    from mace.tools.utils import get_cache_dir

    family, key = PUBLISHED_SOURCES[name]
    if family == "off":
        return mace_off_urls[key], Path(get_cache_dir()) / f"mlft-mace-off23-{key}.model"
    url = mace_mp_urls[key]
    # mace's download_mace_mp_checkpoint names the cached file after the URL this way.
    cached = "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")
    return url, Path(get_cache_dir()) / cached


def reachable(url: str, timeout_s: float) -> bool:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class FoundationModel:
    """A registered foundation: made only by FoundationRegistry.resolve, never from a request."""

    name: str
    path: Path
    # The registration pin: load_foundation refuses bytes with another hash.
    sha256: str


@dataclass(frozen=True)
class FoundationInfo:
    """What a local model file holds, for GET /foundation-models and head selection."""

    sha256: str
    architecture: str  # the mace class: "ScaleShiftMACE", "MACE"
    heads: tuple[str, ...]
    default_head: str
    elements: tuple[str, ...]
    r_max: float
    parameters: int
    dtype: str  # "float32" or "float64"


@dataclass(frozen=True)
class FoundationListing:
    name: str
    source: str  # "local" (a file in models_dir) or "published" (downloaded on first use)
    available: bool
    # Local models only; None for published ones not fetched, or a file that cannot be read.
    info: FoundationInfo | None = None
    # "ready", or "building" with the build's progress (the demo model on first start).
    status: str = "ready"
    progress: dict[str, Any] | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- names ----------------------------------------------------------------------------------

# A registry key, never a path: no '/', '\', '..', NUL or leading dot can get through, since the
# name becomes part of a file name in the models folder.
FOUNDATION_NAME_PATTERN = r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$"
FOUNDATION_NAME_MAX_LENGTH = 100
_FOUNDATION_NAME = re.compile(FOUNDATION_NAME_PATTERN)


def foundation_name_problem(name: str) -> str | None:
    """Why `name` cannot be a foundation model name, or None when it can."""
    if len(name) > FOUNDATION_NAME_MAX_LENGTH or not _FOUNDATION_NAME.fullmatch(name):
        return (
            f"foundation model name {name[:120]!r} is not a registry name: use up to "
            f"{FOUNDATION_NAME_MAX_LENGTH} letters and digits, separated by single '.', '_' or "
            "'-' (no paths); GET /foundation-models lists the names"
        )
    return None


def require_foundation_name(name: str) -> str:
    problem = foundation_name_problem(name)
    if problem is not None:
        raise InvalidSpecError(problem)
    return name


def _checked_name(name: str) -> str:
    problem = foundation_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


# The type of every `foundation_model` field of a request: validated before any lookup.
FoundationName = Annotated[
    str,
    # Checked by _checked_name, whose message says what a name is; the schema shows the rule.
    AfterValidator(_checked_name),
    Field(
        json_schema_extra={
            "pattern": FOUNDATION_NAME_PATTERN,
            "maxLength": FOUNDATION_NAME_MAX_LENGTH,
        }
    ),
]


# ---- loading --------------------------------------------------------------------------------

# Loading a pickled mace model in several threads at once fails inside e3nn's code generation
# ("CURRENT_PATCHER is None"), which concurrent first requests to one API process would do.
_MODEL_LOAD_LOCK = threading.Lock()


def model_load_lock() -> threading.Lock:
    """Held while a process builds or unpickles a mace model (see above); never held around
    load_foundation, which takes it itself."""
    return _MODEL_LOAD_LOCK


def _regular_file_bytes(path: Path) -> bytes:
    """The bytes of a regular file; a symlink (or a device, a folder) is refused, not followed."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise FoundationModelUnavailableError(
            f"model file {path.name} cannot be opened as a regular file ({error.strerror})"
        ) from None
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise FoundationModelUnavailableError(f"model file {path.name} is not a regular file")
        return stream.read()


def _unpickle(data: bytes, device: str) -> Any:
    """The one place a model is unpickled; callers have checked where the bytes come from."""
    import torch

    with _MODEL_LOAD_LOCK:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=False)


def load_foundation(foundation: FoundationModel, device: str = "cpu") -> "torch.nn.Module":
    """A registered foundation's module, after checking that its bytes are the pinned ones.

    The bytes are read once, hashed and unpickled from memory, so the file cannot change
    between the check and the load: loading a model runs its code.
    """
    data = _regular_file_bytes(foundation.path)
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 != foundation.sha256:
        raise FoundationModelUnavailableError(
            f"foundation model file {foundation.path.name} changed since it was registered "
            f"(sha256 {sha256}, registered {foundation.sha256}); refusing to load it"
        )
    return _unpickle(data, device)


def verified_copy(foundation: FoundationModel, destination: Path) -> Path:
    """The pinned bytes of a foundation, written where a process of ours (mace-torch's training)
    loads them: it never reads the models folder itself."""
    data = _regular_file_bytes(foundation.path)
    if hashlib.sha256(data).hexdigest() != foundation.sha256:
        raise FoundationModelUnavailableError(
            f"foundation model file {foundation.path.name} changed since it was registered; "
            "refusing to use it"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(data)
    return destination


def load_own_model(path: Path, device: str = "cpu") -> Any:
    """A model or checkpoint this service wrote itself (a job's output, mace's checkpoint in a
    job folder, a stored artifact under a key the service chose); never a path from a request."""
    return _unpickle(_regular_file_bytes(path), device)


# A model to evaluate: a registered foundation, or a file the service wrote (a job's model).
ModelSource = FoundationModel | Path


def load_model_source(source: ModelSource, device: str = "cpu") -> "torch.nn.Module":
    if isinstance(source, FoundationModel):
        return load_foundation(source, device)
    return load_own_model(source, device)


def model_source_sha256(source: ModelSource) -> str:
    return source.sha256 if isinstance(source, FoundationModel) else file_sha256(source)


@lru_cache(maxsize=16)
def _elements_of(foundation: FoundationModel, _modified: int, _size: int) -> tuple[str, ...]:
    from ase.data import chemical_symbols

    from core.registry import mace_model

    model = load_foundation(foundation)
    return tuple(chemical_symbols[z] for z in mace_model.atomic_numbers(model))


# ---- registration: is this upload a MACE model? -----------------------------------------------

# What a pickled MACE model refers to besides what torch itself deems safe; anything else
# (os.system, builtins.eval, subprocess, ...) has no business in a model file.
MODEL_GLOBAL_ROOTS = ("torch.", "mace.", "e3nn.", "numpy.", "opt_einsum_fx.", "collections.")
INSPECTION_TIMEOUT_S = 300.0
# Run in a separate interpreter: whatever the pickle does happens there, not in the API.
_INSPECT_MODEL = """
import json, sys
import torch
import mace  # noqa: F401  (as the service loads models: e3nn's constants need it)
model = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
found = {"type": type(model).__module__ + "." + type(model).__qualname__,
         "module": isinstance(model, torch.nn.Module)}
numbers = getattr(model, "atomic_numbers", None) if found["module"] else None
r_max = getattr(model, "r_max", None) if found["module"] else None
found["atomic_numbers"] = None if numbers is None else [int(z) for z in numbers]
found["r_max"] = None if r_max is None else float(r_max)
print("MLFT-MODEL " + json.dumps(found))
"""


def check_mace_model_file(path: Path) -> list[int]:
    """The atomic numbers of the MACE model in `path`; InvalidModelFileError naming what is
    wrong for anything else (not a torch archive, foreign code in the pickle, not a module, no
    atomic_numbers or r_max)."""
    _require_torch_archive(path)
    _require_model_globals(path)
    found = _inspect_in_subprocess(path)
    if not found["module"]:
        raise InvalidModelFileError(
            f"the file holds a {found['type']}, not a torch.nn.Module: not a MACE model"
        )
    missing = [key for key in ("atomic_numbers", "r_max") if found[key] is None]
    if missing:
        raise InvalidModelFileError(
            f"the module ({found['type']}) has no {' or '.join(missing)}: not a MACE model"
        )
    return found["atomic_numbers"]


def _require_torch_archive(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        raise InvalidModelFileError(
            "the file is not a PyTorch model archive (what torch.save writes: a zip holding "
            "data.pkl); save the model with torch.save(model, path)"
        )
    with zipfile.ZipFile(path) as archive:
        if not any(name.endswith("/data.pkl") for name in archive.namelist()):
            raise InvalidModelFileError("the zip file holds no data.pkl: not a torch.save archive")


def _require_model_globals(path: Path) -> None:
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as error:  # a corrupt pickle raises anything pickletools can
        raise InvalidModelFileError(f"the model's pickle cannot be read: {error}") from None
    foreign = sorted(name for name in names if not name.startswith(MODEL_GLOBAL_ROOTS))
    if foreign:
        raise InvalidModelFileError(
            f"the pickle refers to {', '.join(foreign[:5])}, which a MACE model does not use; "
            "refusing to load it"
        )


def _inspect_in_subprocess(path: Path) -> dict[str, Any]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        run = subprocess.run(
            [sys.executable, "-c", _INSPECT_MODEL, str(path)],
            capture_output=True,
            text=True,
            timeout=INSPECTION_TIMEOUT_S,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidModelFileError(
            f"loading the model took more than {INSPECTION_TIMEOUT_S:g} s"
        ) from None
    lines = [line for line in run.stdout.splitlines() if line.startswith("MLFT-MODEL ")]
    if run.returncode != 0 or not lines:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise InvalidModelFileError(f"the file cannot be loaded as a model: {last[:300]}")
    return json.loads(lines[-1].removeprefix("MLFT-MODEL "))


# ---- what a file holds: heads, elements, size --------------------------------------------------

# Foundations are immutable once registered (pinned by sha256), so what a file holds is read
# once per content and process: listing models never unpickles them again.
_INFO_BY_SHA256: dict[str, FoundationInfo] = {}
# Head names mace and its users give the head meant by default.
DEFAULT_HEAD_NAMES = ("default", "Default")
REPLAY_HEAD = "pt_head"  # mace's replay head, left over in fine-tuned multi-head models


def default_head(heads: tuple[str, ...]) -> str:
    """The head a job fine-tunes when it names none: one called "default", else the first that is
    not mace's replay head (what mace's own remove_pt_head keeps), else the first."""
    for name in DEFAULT_HEAD_NAMES:
        if name in heads:
            return name
    return next((head for head in heads if head != REPLAY_HEAD), heads[0])


def choose_head(name: str, heads: tuple[str, ...], requested: str | None) -> str:
    """The foundation head a job uses; an unknown head is the user's error."""
    if requested is None:
        return default_head(heads)
    if requested not in heads:
        raise InvalidSpecError(
            f"foundation model {name} has no head {requested!r}; its heads: "
            f"{', '.join(heads)} (default {default_head(heads)})"
        )
    return requested


def read_foundation_info(foundation: FoundationModel) -> FoundationInfo:
    cached = _INFO_BY_SHA256.get(foundation.sha256)
    if cached is not None:
        return cached
    from ase.data import chemical_symbols

    from core.registry import mace_model

    model = load_foundation(foundation)
    heads = tuple(getattr(model, "heads", None) or ("Default",))
    info = FoundationInfo(
        sha256=foundation.sha256,
        architecture=type(model).__name__,
        heads=heads,
        default_head=default_head(heads),
        elements=tuple(chemical_symbols[z] for z in mace_model.atomic_numbers(model)),
        r_max=mace_model.cutoff(model),
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
    )
    _INFO_BY_SHA256[foundation.sha256] = info
    return info


# ---- the registry ---------------------------------------------------------------------------


def _pin_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".sha256")


def _is_regular_file(path: Path) -> bool:
    """True for a regular file itself; a symlink is never followed."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def pin_model_file(path: Path, *, replace: bool = False) -> str:
    """Register a model file its operator placed in the models folder (the demo model's build):
    write the sha256 pin beside it, unless it has one already (or `replace`)."""
    pin = _pin_path(path)
    if replace or not _is_regular_file(pin):
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


class FoundationRegistry:
    """Names → model files. A local model is served only when it is a regular file (not a
    symlink) with its sha256 pin beside it (`<name>.model.sha256`), as registration writes.

    With a `store` (the service's processes), names are pinned in the database and the files
    live in artifact storage, so every process on every machine sees the same models; the
    models folder stays a source an operator can drop pinned files in, imported on first sight.
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        offline: bool = False,
        probe_timeout_s: float = 3.0,
        store: "FoundationStore | None" = None,
    ) -> None:
        self.models_dir = models_dir
        # Offline: published models are only used from the local folder or mace's cache.
        self.offline = offline
        self.probe_timeout_s = probe_timeout_s
        self.store = store

    def require_fetchable(self, name: str) -> None:
        """Refuse, at submission, a published model the worker could not get: neither in the
        local folder, storage nor mace's cache, and its URL unreachable (or the service offline)."""
        if name not in PUBLISHED or self._known(name):
            return
        url, cached = published_source(name)
        if cached.is_file():
            return
        if not self.offline and reachable(url, self.probe_timeout_s):
            return
        why = "the service runs offline" if self.offline else f"{url} cannot be reached"
        raise FoundationModelUnavailableError(
            f"foundation model {name!r} is not cached here and {why}: download {url} elsewhere, "
            f"then have an admin register it (POST /foundation-models with name={name} and the "
            "file; it is pinned by its sha256)"
        )

    def _in_folder(self, name: str) -> FoundationModel | None:
        require_foundation_name(name)
        path = self.models_dir / f"{name}.model"
        pin = _pin_path(path)
        if not (_is_regular_file(path) and _is_regular_file(pin)):
            return None
        return FoundationModel(name, path, pin.read_text().strip())

    def _known(self, name: str) -> bool:
        """Registered here or in the store (any source), without fetching a file."""
        if self._in_folder(name) is not None:
            return True
        return self.store is not None and self.store.get(name) is not None

    def _registered(self, name: str) -> FoundationModel | None:
        """A registered (not published) foundation, as a file on this machine's disk."""
        in_folder = self._in_folder(name)
        if self.store is None:
            return in_folder
        stored = self.store.get(name)
        if stored is None and in_folder is not None:
            stored = self._import(in_folder, "folder")
        if stored is None or stored.source == "published":
            return None
        if in_folder is not None and in_folder.sha256 == stored.sha256:
            self._restore_if_missing(stored, in_folder)
        return self._loadable(stored)

    def _import(self, foundation: FoundationModel, source: str) -> "StoredFoundation":
        assert self.store is not None
        # The pinned bytes go to storage, never a file that changed since it was pinned.
        with tempfile.TemporaryDirectory(prefix="mlft-foundation-") as folder:
            copy = verified_copy(foundation, Path(folder) / f"{foundation.name}.model")
            return self.store.add(foundation.name, copy, foundation.sha256, source)

    def _restore_if_missing(self, stored: "StoredFoundation", in_folder: FoundationModel) -> None:
        assert self.store is not None
        if self.store.holds_file(stored):
            return
        with tempfile.TemporaryDirectory(prefix="mlft-foundation-") as folder:
            copy = verified_copy(in_folder, Path(folder) / f"{in_folder.name}.model")
            self.store.restore_file(stored, copy)

    def _import_from_folder(self, in_folder: FoundationModel) -> bool:
        """Whether the folder's model was new to the store."""
        assert self.store is not None
        stored = self.store.get(in_folder.name)
        if stored is None:
            self._import(in_folder, "folder")
            return True
        if stored.sha256 == in_folder.sha256:
            self._restore_if_missing(stored, in_folder)
        else:
            logger.warning(
                "models folder: %s differs from the stored foundation of that name (sha256 %s); "
                "the stored one is used",
                in_folder.path,
                stored.sha256,
            )
        return False

    def _loadable(self, stored: "StoredFoundation") -> FoundationModel:
        assert self.store is not None
        try:
            path = self.store.local_copy(stored)
        except ArtifactMissingError:
            raise FoundationModelUnavailableError(
                f"foundation model {stored.name!r} (sha256 {stored.sha256}) is registered but "
                "its file is not in artifact storage: register the file again, or place it with "
                "its pin in the API's MLFT_MODELS_DIR"
            ) from None
        return FoundationModel(stored.name, path, stored.sha256)

    def import_models_folder(self) -> list[str]:
        """Store the folder's pinned models that the store does not hold yet (at start, and when
        listing); a name the store pins to other bytes keeps the store's pin."""
        if self.store is None or not self.models_dir.is_dir():
            return []
        imported = []
        for path in sorted(self.models_dir.glob("*.model")):
            if foundation_name_problem(path.stem) is not None:
                continue
            in_folder = self._in_folder(path.stem)
            if in_folder is None:
                continue
            try:
                if self._import_from_folder(in_folder):
                    imported.append(path.stem)
            except FoundationModelUnavailableError as error:  # changed since it was pinned
                logger.warning("models folder: %s not imported: %s", path, error)
        return imported

    def local_names(self) -> list[str]:
        if self.store is not None:
            self.import_models_folder()
            return [item.name for item in self.store.all() if item.source != "published"]
        if not self.models_dir.is_dir():
            return []
        names = []
        for path in self.models_dir.glob("*.model"):
            if foundation_name_problem(path.stem) is None and self._registered(path.stem):
                names.append(path.stem)
            else:
                logger.warning("models folder: %s is not a registered model file; ignored", path)
        return sorted(names)

    def listing(self) -> list[FoundationListing]:
        local = self.local_names()
        building = [
            FoundationListing(name, "local", False, None, "building", progress)
            for name, progress in self.builds().items()
            if name not in local
        ]
        published = [name for name in PUBLISHED if name not in local]
        listed = [FoundationListing(name, "local", True, self._listed_info(name)) for name in local]
        return (
            listed
            + building
            + [FoundationListing(name, "published", self._stored(name)) for name in published]
        )

    def _stored(self, name: str) -> bool:
        """A published model some worker downloaded into the store already."""
        return self.store is not None and self.store.get(name) is not None

    def info(self, name: str) -> FoundationInfo | None:
        """What a local foundation holds; None when it is only published (not fetched)."""
        foundation = self._registered(name)
        if foundation is None:
            return None
        return read_foundation_info(foundation)

    def _listed_info(self, name: str) -> FoundationInfo | None:
        try:
            return self.info(name)
        except Exception as error:  # one unreadable file must not take the listing down
            logger.warning("foundation %s cannot be read for the listing: %s", name, error)
            return None

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

    def ensure_not_building(self, name: str | None) -> None:
        """503 for a model still being built: it will exist in a minute or two."""
        progress = self.builds().get(name) if name is not None else None
        if progress is not None:
            raise FoundationModelBuildingError(
                f"foundation model {name!r} is being built (epoch {progress['epochs_done']}/"
                f"{progress['max_epochs']}, {progress['elapsed_seconds']:.0f} s so far); submit "
                "again once GET /foundation-models lists it as ready"
            )

    def require_known(self, name: str | None) -> None:
        """What a spec naming `name` is checked for: 503 while the model is being built, 422
        (InvalidSpecError) for a name the registry does not know. None names no model."""
        self.ensure_not_building(name)
        if name is not None and not self.exists(name):
            raise InvalidSpecError(
                f"unknown foundation model {name!r}; GET /foundation-models lists them"
            )

    def exists(self, name: str) -> bool:
        if foundation_name_problem(name) is not None:
            return False
        return name in PUBLISHED or self._known(name)

    def local_elements(self, name: str) -> list[str] | None:
        """Elements of a local foundation model; None when it is only published (not fetched)."""
        foundation = self._registered(name)
        if foundation is None:
            return None
        status = foundation.path.lstat()
        return list(_elements_of(foundation, status.st_mtime_ns, status.st_size))

    def register(self, name: str, upload: Path) -> FoundationModel:
        """Add an uploaded MACE model under a name, pinned by its sha256 (admins only: a pickle).
        Anything else is refused (InvalidModelFileError) and leaves nothing behind."""
        require_foundation_name(name)
        # A published name not on disk is free: registering the downloaded file under it is how
        # an offline site brings that model in.
        if self._known(name) or (self.models_dir / f"{name}.model").exists():
            raise ConflictError(f"a foundation model named {name!r} exists already")
        check_mace_model_file(upload)
        sha256 = file_sha256(upload)
        if self.store is not None:
            stored = self.store.add(name, upload, sha256, "upload")
            if stored.sha256 != sha256 or stored.source != "upload":
                raise ConflictError(f"a foundation model named {name!r} exists already")
            return self._loadable(stored)
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
        require_foundation_name(name)
        local = self._registered(name)
        if local is not None:
            return local
        if name not in PUBLISHED:
            known = ", ".join(self.local_names() + list(PUBLISHED))
            raise NotFoundError(f"unknown foundation model {name!r}; known: {known}")
        stored = self.store.get(name) if self.store is not None else None
        if stored is not None:  # downloaded once, by whichever process needed it first
            return self._loadable(stored)
        try:
            path = Path(PUBLISHED[name]())
        except Exception as error:  # the download path raises anything from URLError to OSError
            raise FoundationModelUnavailableError(
                f"foundation model {name!r} could not be downloaded ({error}); register the "
                "file through POST /foundation-models to use it offline"
            ) from error
        logger.info("foundation %s resolved to %s", name, path)
        # Downloaded from mace-torch's fixed address: pinned to what was fetched.
        downloaded = FoundationModel(name, path, file_sha256(path))
        if self.store is None:
            return downloaded
        return self._loadable(self._import(downloaded, "published"))
