import tempfile
from pathlib import Path

from fastapi import APIRouter, UploadFile, status

from api.deps import ContextDep, SessionDep, SettingsDep
from api.errors import PayloadTooLargeError
from api.schemas import DatasetPublic, DatasetsPublic
from core.catalog import get_dataset, list_datasets, register_dataset
from core.errors import InvalidDatasetError

router = APIRouter(prefix="/datasets", tags=["datasets"])
CHUNK_BYTES = 1 << 20


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic)
async def upload_dataset(
    file: UploadFile, session: SessionDep, context: ContextDep, settings: SettingsDep
) -> DatasetPublic:
    """Upload an extxyz file; it is validated and summarised, or rejected with a 422."""
    uploads = settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=uploads, suffix=".extxyz", delete=False) as spool:
        spooled = Path(spool.name)
    try:
        await _spool(file, spooled, settings.max_upload_bytes)
        dataset = register_dataset(
            session, context.storage, spooled, file.filename or "dataset.extxyz"
        )
    finally:
        spooled.unlink(missing_ok=True)
    return DatasetPublic.of(dataset)


async def _spool(file: UploadFile, target: Path, limit: int) -> None:
    written = 0
    with target.open("wb") as out:
        while chunk := await file.read(CHUNK_BYTES):
            written += len(chunk)
            if written > limit:
                raise PayloadTooLargeError(f"the upload exceeds the limit of {limit} bytes")
            out.write(chunk)
    if written == 0:
        raise InvalidDatasetError("the uploaded file is empty")


@router.get("", response_model=DatasetsPublic)
def read_datasets(session: SessionDep, limit: int = 100, offset: int = 0) -> DatasetsPublic:
    datasets = list_datasets(session, limit=limit, offset=offset)
    return DatasetsPublic(data=[DatasetPublic.of(d) for d in datasets], count=len(datasets))


@router.get("/{dataset_id}", response_model=DatasetPublic)
def read_dataset(dataset_id: str, session: SessionDep) -> DatasetPublic:
    return DatasetPublic.of(get_dataset(session, dataset_id))
