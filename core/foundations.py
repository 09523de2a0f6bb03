"""Registry of named foundation models.

A name resolves, in order, to `<models_dir>/<name>.model` (how offline sites and the demo model
work), or to a published MACE model fetched through mace-torch's own download-and-cache code.
"""

import hashlib
import logging
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.errors import (
    ConflictError,
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


def read_foundation_info(path: Path, sha256: str) -> FoundationInfo:
    cached = _INFO_BY_SHA256.get(sha256)
    if cached is not None:
        return cached
    import torch
    from ase.data import chemical_symbols

    # Registered foundations are trusted pickles (only admins add them).
    with _MODEL_LOAD_LOCK:
        model = torch.load(path, map_location="cpu", weights_only=False)
    heads = tuple(getattr(model, "heads", None) or ("Default",))
    info = FoundationInfo(
        sha256=sha256,
        architecture=type(model).__name__,
        heads=heads,
        default_head=default_head(heads),
        elements=tuple(chemical_symbols[int(z)] for z in model.atomic_numbers),
        r_max=float(model.r_max),
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
    )
    _INFO_BY_SHA256[sha256] = info
    return info


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


class FoundationRegistry:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir

    def local_names(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(path.stem for path in self.models_dir.glob("*.model"))

    def listing(self) -> list[FoundationListing]:
        local = self.local_names()
        published = [name for name in PUBLISHED if name not in local]
        listed = [FoundationListing(name, "local", True, self._listed_info(name)) for name in local]
        return listed + [FoundationListing(name, "published", False) for name in published]

    def info(self, name: str) -> FoundationInfo | None:
        """What a local foundation holds; None when it is only published (not fetched)."""
        path = self.models_dir / f"{name}.model"
        if not path.is_file():
            return None
        return read_foundation_info(path, _verified_sha256(str(path), path.stat().st_mtime_ns))

    def _listed_info(self, name: str) -> FoundationInfo | None:
        try:
            return self.info(name)
        except Exception as error:  # one unreadable file must not take the listing down
            logger.warning("foundation %s cannot be read for the listing: %s", name, error)
            return None

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
        # A published name not on disk is free: registering the downloaded file under it is how
        # an offline site brings that model in.
        if (self.models_dir / f"{name}.model").is_file():
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
