"""Registry of named foundation models.

A name is a registry key, never a path. It resolves, in order, to a registered model (POST
/foundation-models, or a pinned `<models_dir>/<name>.model` its operator placed, such as the
demo model's build), or to a published MACE model fetched through mace-torch's download-and-cache
code. Every model file is read once, in the sandbox (core.registry.model_sandbox), and kept only
in its safe form (core.registry.safe_model); every use rebuilds the model from that. In the
service the safe files are shared through artifact storage and pinned in the database with the
facts a request needs (core.registry.foundation_store), so every worker on every machine sees
them and no request reads a model file.

The registry's reads (`info`, `local_elements`, `exists`) never write; registering, resolving
and importing the models folder (at start and when listing) do.
"""

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import (
    ArtifactMissingError,
    ConflictError,
    FoundationModelBuildingError,
    FoundationModelUnavailableError,
    InvalidModelFileError,
    InvalidSpecError,
    NotFoundError,
)
from core.registry.catalogue import (
    DEMO_FOUNDATION_NAME,
    FOUNDATION_NAME_MAX_LENGTH,
    FOUNDATION_NAME_PATTERN,
    PUBLISHED,
    PUBLISHED_SOURCES,
    FoundationName,
    file_sha256,
    foundation_name_problem,
    published_source,
    reachable,
    require_foundation_name,
)
from core.registry.heads import DEFAULT_HEAD_NAMES, REPLAY_HEAD, choose_head, default_head
from core.registry.loading import (
    FoundationModel,
    ModelSource,
    load_foundation,
    load_model_source,
    load_own_model,
    model_load_lock,
    model_source_sha256,
    pinned_bytes,
    write_mace_foundation,
)
from core.registry.model_sandbox import SandboxLimits, convert_in_sandbox
from core.registry.models_folder import ModelsFolder, safe_form_of
from core.registry.pins import build_progress, building_marker, mark_building, pin_model_file
from core.registry.safe_model import ModelFacts, read_header

if TYPE_CHECKING:
    from core.registry.foundation_store import FoundationStore, StoredFoundation

# Names other modules import from here; each lives in the module named above.
__all__ = [
    "DEFAULT_HEAD_NAMES",
    "DEMO_FOUNDATION_NAME",
    "FOUNDATION_NAME_MAX_LENGTH",
    "FOUNDATION_NAME_PATTERN",
    "PUBLISHED",
    "PUBLISHED_SOURCES",
    "REPLAY_HEAD",
    "FoundationInfo",
    "FoundationListing",
    "FoundationModel",
    "FoundationName",
    "FoundationRegistry",
    "ModelSource",
    "build_progress",
    "building_marker",
    "check_mace_model_file",
    "choose_head",
    "default_head",
    "file_sha256",
    "foundation_name_problem",
    "load_foundation",
    "load_model_source",
    "load_own_model",
    "mark_building",
    "model_load_lock",
    "model_source_sha256",
    "pin_model_file",
    "published_source",
    "reachable",
    "require_foundation_name",
    "write_mace_foundation",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundationInfo:
    """What a registered model holds, for GET /foundation-models, head selection and submission:
    read from its registry row (or its safe file's header), never by loading it."""

    sha256: str  # of the safe form that is loaded
    architecture: str  # the mace class: "ScaleShiftMACE"
    heads: tuple[str, ...]
    default_head: str
    elements: tuple[str, ...]
    r_max: float
    parameters: int
    dtype: str  # "float32" or "float64"
    # E0s (eV) per head and element.
    e0s: dict[str, dict[str, float]]
    # The sha256 of the file as it was uploaded or downloaded.
    upload_sha256: str
    # "upload", "folder" or "promoted" (a job's model, with its lineage).
    registered_as: str = "upload"
    lineage: dict[str, Any] | None = None

    @classmethod
    def of(
        cls,
        sha256: str,
        facts: ModelFacts,
        upload_sha256: str,
        registered_as: str = "upload",
        lineage: dict[str, Any] | None = None,
    ) -> "FoundationInfo":
        heads = tuple(facts.heads)
        return cls(
            sha256=sha256,
            architecture=facts.architecture,
            heads=heads,
            default_head=default_head(heads),
            elements=tuple(facts.elements),
            r_max=facts.r_max,
            parameters=facts.parameters,
            dtype=facts.dtype,
            e0s=facts.e0s,
            upload_sha256=upload_sha256,
            registered_as=registered_as,
            lineage=lineage,
        )


@dataclass(frozen=True)
class FoundationListing:
    name: str
    source: str  # "local" (registered) or "published" (downloaded on first use)
    available: bool
    # Registered models only; None for published ones.
    info: FoundationInfo | None = None
    # "ready", or "building" with the build's progress (the demo model on first start).
    status: str = "ready"
    progress: dict[str, Any] | None = None


def check_mace_model_file(path: Path, limits: SandboxLimits | None = None) -> ModelFacts:
    """What the MACE model in `path` holds, read in the sandbox (nothing is kept);
    InvalidModelFileError naming what is wrong for anything mace cannot fine-tune from."""
    with tempfile.TemporaryDirectory(prefix="mlft-check-") as folder:
        return convert_in_sandbox(path, Path(folder) / "model.safetensors", "", limits)


class FoundationRegistry:
    """Names → safe model files. A model in the models folder is served only when it is a
    regular file (not a symlink) with its sha256 pin beside it, as registration writes.

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
        sandbox: SandboxLimits | None = None,
    ) -> None:
        self.models_dir = models_dir
        # Offline: published models are only used from the local folder or mace's cache.
        self.offline = offline
        self.probe_timeout_s = probe_timeout_s
        self.store = store
        self.sandbox = sandbox
        self.folder = ModelsFolder(models_dir, sandbox)

    # ---- reads: never write -------------------------------------------------------------------

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

    def _known(self, name: str) -> bool:
        """Registered here or in the store (any source), without fetching a file."""
        require_foundation_name(name)
        if self.folder.holds(name):
            return True
        return self.store is not None and self.store.get(name) is not None

    def info(self, name: str) -> FoundationInfo | None:
        """What a registered foundation holds, from its row (or its safe file's header); None when
        it is only published, or not converted yet (the models folder is imported at start)."""
        require_foundation_name(name)
        stored = self.store.get(name) if self.store is not None else None
        if stored is not None:
            if stored.source == "published":
                return None
            return FoundationInfo.of(
                stored.sha256, stored.facts, stored.upload_sha256, stored.source, stored.lineage
            )
        try:
            found = self.folder.facts(name)
        except InvalidModelFileError as error:
            logger.warning("models folder: %s cannot be read: %s", name, error)
            return None
        return None if found is None else FoundationInfo.of(found[1], found[0], found[2], "folder")

    def local_elements(self, name: str) -> list[str] | None:
        """Elements of a registered foundation; None when it is only published (not fetched)."""
        info = self.info(name)
        return None if info is None else list(info.elements)

    def exists(self, name: str) -> bool:
        if foundation_name_problem(name) is not None:
            return False
        return name in PUBLISHED or self._known(name)

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

    # ---- listing: imports the models folder first -----------------------------------------------

    def local_names(self) -> list[str]:
        self.import_models_folder()
        if self.store is not None:
            return [item.name for item in self.store.all() if item.source != "published"]
        return [name for name in self.folder.names() if self.folder.safe(name) is not None]

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

    def _listed_info(self, name: str) -> FoundationInfo | None:
        try:
            return self.info(name)
        except Exception as error:  # one unreadable entry must not take the listing down
            logger.warning("foundation %s cannot be read for the listing: %s", name, error)
            return None

    # ---- writes ---------------------------------------------------------------------------------

    def import_models_folder(self) -> list[str]:
        """Convert the folder's pinned models and store those the store does not hold yet (at
        start, and when listing); a name the store pins to other bytes keeps the store's pin."""
        imported = []
        for name in self.folder.names():
            try:
                converted = self.folder.safe(name) is None
                in_folder = self.folder.model(name)
                if in_folder is None:
                    continue
                new = self._import_from_folder(in_folder) if self.store is not None else converted
            except (FoundationModelUnavailableError, InvalidModelFileError) as error:
                logger.warning("models folder: %s not imported: %s", name, error)
                continue
            if new:
                imported.append(name)
        return imported

    def _import(self, foundation: FoundationModel, source: str) -> "StoredFoundation":
        assert self.store is not None
        _, facts, upload_sha256 = read_header(foundation.path)
        # The pinned bytes go to storage, never a file that changed since it was pinned.
        with tempfile.TemporaryDirectory(prefix="mlft-foundation-") as folder:
            copy = Path(folder) / "model.safetensors"
            copy.write_bytes(pinned_bytes(foundation.path, foundation.sha256))
            return self.store.add(
                foundation.name, copy, foundation.sha256, source, facts, upload_sha256
            )

    def _restore_if_missing(self, stored: "StoredFoundation", in_folder: FoundationModel) -> None:
        assert self.store is not None
        if self.store.holds_file(stored):
            return
        with tempfile.TemporaryDirectory(prefix="mlft-foundation-") as folder:
            copy = Path(folder) / "model.safetensors"
            copy.write_bytes(pinned_bytes(in_folder.path, in_folder.sha256))
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

    def _registered(self, name: str) -> FoundationModel | None:
        """A registered (not published) foundation's safe file on this machine's disk; imports
        a folder model the store has not seen yet."""
        if self.store is None:
            return self.folder.model(name)
        stored = self.store.get(name)
        in_folder = self.folder.model(name)
        if stored is None and in_folder is not None:
            stored = self._import(in_folder, "folder")
        if stored is None or stored.source == "published":
            return None
        if in_folder is not None and in_folder.sha256 == stored.sha256:
            self._restore_if_missing(stored, in_folder)
        return self._loadable(stored)

    def register(
        self,
        name: str,
        upload: Path,
        *,
        source: str = "upload",
        lineage: dict[str, Any] | None = None,
    ) -> FoundationModel:
        """Add an uploaded MACE model under a name (admins only), or a succeeded job's model
        (source "promoted", with its lineage). The file is read in the sandbox and only its safe
        form kept, pinned by its sha256; anything else is refused (InvalidModelFileError naming
        why) and leaves nothing behind."""
        require_foundation_name(name)
        # A published name not registered is free: registering the downloaded file under it is
        # how an offline site brings that model in.
        if self._known(name) or self.folder.occupied(name):
            raise ConflictError(f"a foundation model named {name!r} exists already")
        upload_sha256 = file_sha256(upload)
        with tempfile.TemporaryDirectory(prefix="mlft-register-") as folder:
            safe = Path(folder) / "model.safetensors"
            facts = convert_in_sandbox(upload, safe, upload_sha256, self.sandbox)
            if self.store is None:
                registered = self.folder.add(name, safe)
            else:
                sha256 = file_sha256(safe)
                stored = self.store.add(name, safe, sha256, source, facts, upload_sha256, lineage)
                if stored.sha256 != sha256 or stored.source != source:
                    raise ConflictError(f"a foundation model named {name!r} exists already")
                registered = self._loadable(stored)
        logger.info(
            "foundation %s registered source=%s sha256=%s upload_sha256=%s",
            name,
            source,
            registered.sha256,
            upload_sha256,
        )
        return registered

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
        logger.info("foundation %s downloaded to %s", name, path)
        # Downloaded from mace-torch's fixed address: pinned to what was fetched, converted in
        # the sandbox like any upload, its safe form kept beside mace's cached file.
        downloaded = safe_form_of(
            name,
            path,
            file_sha256(path),
            path.with_name(path.name + ".mlft.safetensors"),
            self.sandbox,
        )
        if self.store is None:
            return downloaded
        return self._loadable(self._import(downloaded, "published"))
