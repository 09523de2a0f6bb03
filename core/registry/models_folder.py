"""A models folder: the files an operator placed (pinned pickles such as the demo model's build),
and their safe forms beside them.

`<name>.model` with its pin `<name>.model.sha256` is an operator's registration: converted once,
in the sandbox, into `<name>.safetensors` (pinned by `<name>.safetensors.sha256`, its header
naming the pickle's sha256), which is all that is ever loaded. A folder registry without a
database (tests, offline tools) registers uploads as `<name>.safetensors` alone. Links are never
followed; a file without its pin is not served.
"""

import logging
import tempfile
from pathlib import Path

from core.artifacts.atomic_files import copy_atomically
from core.errors import FoundationModelUnavailableError, InvalidModelFileError
from core.registry.catalogue import file_sha256, foundation_name_problem
from core.registry.loading import FoundationModel
from core.registry.model_sandbox import SandboxLimits, convert_in_sandbox
from core.registry.pins import is_regular_file, pin_path
from core.registry.safe_model import ModelFacts, read_header

logger = logging.getLogger(__name__)

SAFE_SUFFIX = ".safetensors"
PICKLE_SUFFIX = ".model"


def write_pinned(safe_file: Path, target: Path) -> str:
    """Put a safe file in place with its pin; the pin first, so the file never exists here
    without the hash it must have. Its sha256 is returned."""
    sha256 = file_sha256(safe_file)
    pin_path(target).write_text(sha256 + "\n")
    copy_atomically(safe_file, target)
    return sha256


def safe_form_of(
    name: str, pickle: Path, sha256: str, target: Path, limits: SandboxLimits | None
) -> FoundationModel:
    """The safe form of a pinned pickle at `target` (made in the sandbox unless a current one is
    there already): a pickle whose bytes are not the pinned ones is refused."""
    current = pinned_safe_file(target, made_from=sha256)
    if current is not None:
        return FoundationModel(name, target, current)
    if file_sha256(pickle) != sha256:
        raise FoundationModelUnavailableError(
            f"foundation model file {pickle.name} changed since it was registered; refusing to "
            "use it"
        )
    with tempfile.TemporaryDirectory(prefix="mlft-foundation-") as folder:
        converted = Path(folder) / "model.safetensors"
        convert_in_sandbox(pickle, converted, sha256, limits)
        return FoundationModel(name, target, write_pinned(converted, target))


def pinned_safe_file(path: Path, made_from: str | None = None) -> str | None:
    """The pin of a safe file that is a regular file with its pin (and, given `made_from`, was
    made from the file of that sha256), else None."""
    pin = pin_path(path)
    if not (is_regular_file(path) and is_regular_file(pin)):
        return None
    if made_from is not None:
        try:
            _, _, source = read_header(path)
        except (InvalidModelFileError, OSError):
            return None
        if source != made_from:
            return None
    return pin.read_text().strip()


class ModelsFolder:
    def __init__(self, path: Path, limits: SandboxLimits | None = None) -> None:
        self.path = path
        self.limits = limits

    def _pickle(self, name: str) -> tuple[Path, str] | None:
        path = self.path / f"{name}{PICKLE_SUFFIX}"
        pin = pin_path(path)
        if not (is_regular_file(path) and is_regular_file(pin)):
            return None
        return path, pin.read_text().strip()

    def safe(self, name: str) -> FoundationModel | None:
        """The name's safe file when it is there and current; never converts (a read)."""
        path = self.path / f"{name}{SAFE_SUFFIX}"
        pickle = self._pickle(name)
        sha256 = pinned_safe_file(path, made_from=pickle[1] if pickle else None)
        return None if sha256 is None else FoundationModel(name, path, sha256)

    def holds(self, name: str) -> bool:
        """Registered here (converted or not), without converting anything."""
        return self._pickle(name) is not None or self.safe(name) is not None

    def occupied(self, name: str) -> bool:
        return any(
            (self.path / f"{name}{suffix}").exists() for suffix in (SAFE_SUFFIX, PICKLE_SUFFIX)
        )

    def model(self, name: str) -> FoundationModel | None:
        """The name's safe form, converting an operator's pinned pickle on first use."""
        found = self.safe(name)
        if found is not None:
            return found
        pickle = self._pickle(name)
        if pickle is None:
            return None
        made = safe_form_of(name, *pickle, self.path / f"{name}{SAFE_SUFFIX}", self.limits)
        logger.info("models folder: %s converted to its safe form sha256=%s", name, made.sha256)
        return made

    def facts(self, name: str) -> tuple[ModelFacts, str, str] | None:
        """(facts, safe sha256, upload sha256) from a converted file's header; a read."""
        found = self.safe(name)
        if found is None:
            return None
        _, facts, source = read_header(found.path)
        return facts, found.sha256, source

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        stems = {
            path.name.removesuffix(suffix)
            for suffix in (PICKLE_SUFFIX, SAFE_SUFFIX)
            for path in self.path.glob(f"*{suffix}")
        }
        found = []
        for stem in sorted(stems):
            if foundation_name_problem(stem) is None and self.holds(stem):
                found.append(stem)
            else:
                logger.warning("models folder: %s is not a registered model file; ignored", stem)
        return found

    def add(self, name: str, safe_file: Path) -> FoundationModel:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"{name}{SAFE_SUFFIX}"
        return FoundationModel(name, target, write_pinned(safe_file, target))
