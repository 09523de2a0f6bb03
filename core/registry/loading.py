"""Loading models: a registered foundation is rebuilt from its safe form, never unpickled; a
pickle is read only when this service wrote it itself (a job's model, mace's checkpoint).

A foundation's safe file is read once, hashed and rebuilt from memory, so it cannot change between
the check and the load.
"""

import hashlib
import io
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import FoundationModelUnavailableError, InvalidModelFileError
from core.registry.catalogue import file_sha256
from core.registry.safe_model import read_safe_model

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FoundationModel:
    """A registered foundation in its safe form (core.registry.safe_model): made only by
    FoundationRegistry.resolve or by core.registry.foundation_heads, never from a request."""

    name: str
    path: Path
    # The pin of the safe file: load_foundation refuses bytes with another hash.
    sha256: str


# Building (or unpickling) a mace model in several threads at once fails inside e3nn's code
# generation ("CURRENT_PATCHER is None"), which concurrent first requests to one API would do.
_MODEL_LOAD_LOCK = threading.Lock()


def model_load_lock() -> threading.Lock:
    """Held while a process builds or unpickles a mace model (see above); never held around
    load_foundation, which takes it itself."""
    return _MODEL_LOAD_LOCK


def regular_file_bytes(path: Path) -> bytes:
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


def pinned_bytes(path: Path, sha256: str) -> bytes:
    data = regular_file_bytes(path)
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise FoundationModelUnavailableError(
            f"foundation model file {path.name} changed since it was registered "
            f"(sha256 {found}, registered {sha256}); refusing to load it"
        )
    return data


def load_foundation(foundation: FoundationModel, device: str = "cpu") -> "torch.nn.Module":
    """A registered foundation's module, rebuilt by mace's constructors from its pinned safe
    file."""
    data = pinned_bytes(foundation.path, foundation.sha256)
    try:
        with _MODEL_LOAD_LOCK:
            return read_safe_model(data, device)
    except InvalidModelFileError as error:
        raise FoundationModelUnavailableError(
            f"foundation model {foundation.name!r} cannot be rebuilt: {error}"
        ) from None


def write_mace_foundation(model: "torch.nn.Module", destination: Path) -> Path:
    """The pickle mace-torch's training process reads as its foundation: written here, by this
    service, from a model rebuilt from its safe form; never a file someone uploaded."""
    import torch

    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, destination)
    return destination


def load_own_model(path: Path, device: str = "cpu") -> Any:
    """A model or checkpoint this service wrote itself (a job's output, mace's checkpoint in a
    job folder, a stored artifact under a key the service chose); never a path from a request,
    never a registered foundation."""
    import torch

    data = regular_file_bytes(path)
    with _MODEL_LOAD_LOCK:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=False)


# A model to evaluate: a registered foundation, or a file the service wrote (a job's model).
ModelSource = FoundationModel | Path


def load_model_source(source: ModelSource, device: str = "cpu") -> "torch.nn.Module":
    if isinstance(source, FoundationModel):
        return load_foundation(source, device)
    return load_own_model(source, device)


def model_source_sha256(source: ModelSource) -> str:
    return source.sha256 if isinstance(source, FoundationModel) else file_sha256(source)
