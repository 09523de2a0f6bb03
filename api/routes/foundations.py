import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status

from api.deps import AdminDep, PrincipalDep, RegistryDep, SettingsDep
from api.schemas import FoundationPublic, FoundationRegistered
from core.errors import NotFoundError
from core.registry.foundations import FoundationListing, require_foundation_name

router = APIRouter(prefix="/foundation-models", tags=["foundation models"])


def _public(item: FoundationListing) -> FoundationPublic:
    return FoundationPublic(
        name=item.name,
        source=item.source,
        available=item.available,
        status=item.status,
        progress=item.progress,
        **(asdict(item.info) if item.info is not None else {}),
    )


@router.get("", response_model=list[FoundationPublic])
def read_foundation_models(
    registry: RegistryDep, _principal: PrincipalDep
) -> list[FoundationPublic]:
    return [_public(item) for item in registry.listing()]


@router.get(
    "/{name}",
    response_model=FoundationPublic,
    responses={404: {"description": "No foundation model of that name"}},
)
def read_foundation_model(
    name: str, registry: RegistryDep, _principal: PrincipalDep
) -> FoundationPublic:
    """One foundation model; a promoted one with its lineage (parent foundation, job, data)."""
    require_foundation_name(name)
    info = registry.info(name)
    if info is not None:
        return FoundationPublic(name=name, source="local", available=True, **asdict(info))
    for item in registry.listing():
        if item.name == name:
            return _public(item)
    raise NotFoundError(f"foundation model {name!r} does not exist; GET /foundation-models")


@router.post(
    "",
    response_model=FoundationRegistered,
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"description": "Only the admin token may register foundation models"},
        409: {"description": "A foundation model of that name exists"},
    },
)
def register_foundation_model(
    name: Annotated[str, Form(examples=["mace-mp-0-small-lab"])],
    file: Annotated[UploadFile, File(description="A mace-torch .model file")],
    registry: RegistryDep,
    settings: SettingsDep,
    _admin: AdminDep,
) -> FoundationRegistered:
    """Register a model under a name.

    A .model file is a pickle, and loading a pickle runs code: only admins may add one, and it is
    read only in a locked-down sandbox, with an allowlist of the classes a MACE model is made of.
    What is kept is its safe form (weights as safetensors, architecture as JSON), pinned by its
    sha256; anything that is not a ScaleShiftMACE mace-torch can fine-tune from is a 422 naming
    why. docs/model-registration.md.
    """
    folder = settings.data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".model") as spool:
        shutil.copyfileobj(file.file, spool, length=1 << 20)
        spool.flush()
        model = registry.register(name, Path(spool.name))
    info = registry.info(model.name)
    assert info is not None  # just registered
    return FoundationRegistered(
        name=model.name, sha256=model.sha256, upload_sha256=info.upload_sha256
    )
