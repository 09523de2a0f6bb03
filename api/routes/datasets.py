from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from api.deps import ContextDep, LimitParam, OffsetParam, SessionDep, SettingsDep
from api.schemas import DatasetPublic, DatasetsPublic
from core.catalog import get_dataset, list_datasets, register_dataset
from core.errors import InvalidDatasetError, UploadTooLargeError
from core.uploads import CHUNK_BYTES, UploadSpool, stored_name, upload_spool

router = APIRouter(prefix="/datasets", tags=["datasets"])
# Boundaries and part headers around the file; the file itself is held to the upload limit.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    openapi_extra=UPLOAD_BODY,
    responses={413: {"description": "the file, or what its gzip unpacks to, is too large"}},
)
async def upload_dataset(
    request: Request, session: SessionDep, context: ContextDep, settings: SettingsDep
) -> DatasetPublic:
    """Upload an extxyz file (or a gzip of one) as multipart field `file`; it is validated and
    summarised, or rejected with a 422 naming the problem (413 above the size limit)."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD_BYTES:
        raise UploadTooLargeError(
            f"the upload ({declared} bytes) exceeds the limit of {limit} bytes "
            "(MLFT_MAX_UPLOAD_BYTES)"
        )
    with upload_spool(settings.data_dir / "uploads", limit) as spool:
        file = await _file_part(request, limit)
        try:
            await _spool(file, spool)
        finally:
            await file.close()
        plain = await run_in_threadpool(spool.finish)
        dataset = await run_in_threadpool(
            register_dataset, session, context.storage, plain, stored_name(file.filename)
        )
    return DatasetPublic.of(dataset)


async def _file_part(request: Request, limit: int) -> UploadFile:
    """The `file` part, parsed while the body streams in; the body is cut off at the limit."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidDatasetError("send the dataset as multipart/form-data with a field 'file'")
    parser = MultiPartParser(
        request.headers, _limited(request.stream(), limit), max_files=1, max_fields=8
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise InvalidDatasetError(f"the multipart body cannot be read: {error.message}") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        await form.close()
        raise InvalidDatasetError("the multipart body has no file field named 'file'")
    return file


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit + MULTIPART_OVERHEAD_BYTES:
            raise UploadTooLargeError(
                f"the upload exceeds the limit of {limit} bytes (MLFT_MAX_UPLOAD_BYTES)"
            )
        yield chunk


async def _spool(file: UploadFile, spool: UploadSpool) -> None:
    while chunk := await file.read(CHUNK_BYTES):
        spool.write(chunk)


@router.get("", response_model=DatasetsPublic)
def read_datasets(
    session: SessionDep, limit: LimitParam = 100, offset: OffsetParam = 0
) -> DatasetsPublic:
    datasets = list_datasets(session, limit=limit, offset=offset)
    return DatasetsPublic(data=[DatasetPublic.of(d) for d in datasets], count=len(datasets))


@router.get("/{dataset_id}", response_model=DatasetPublic)
def read_dataset(dataset_id: str, session: SessionDep) -> DatasetPublic:
    return DatasetPublic.of(get_dataset(session, dataset_id))
