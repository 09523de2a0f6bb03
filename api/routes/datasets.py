from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from api.deps import ContextDep, LimitParam, OffsetParam, SessionDep, SettingsDep
from api.list_params import DatasetFilters
from api.schemas import DatasetPublic, DatasetsPublic
from core.artifacts.uploads import CHUNK_BYTES, UploadSpool, stored_name, upload_spool
from core.data.catalog import find_same_upload, get_dataset, list_datasets, register_dataset
from core.data.labels import LABELS, LabelKeys
from core.errors import InvalidDatasetError, UploadTooLargeError

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
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        # mace's flag names: the keys holding the labels, when not recognised.
                        **{f"{label}_key": {"type": "string"} for label in LABELS},
                    },
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
    responses={
        200: {
            "description": "the same file was uploaded before: the existing dataset",
            "model": DatasetPublic,
        },
        413: {"description": "the file, or what its gzip unpacks to, is too large"},
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    session: SessionDep,
    context: ContextDep,
    settings: SettingsDep,
) -> DatasetPublic:
    """Upload an extxyz file (or a gzip of one) as multipart field `file`; it is validated and
    summarised, or rejected with a 422 naming the problem (413 above the size limit).

    Optional fields `energy_key`, `forces_key`, `stress_key`, `virials_key` name the keys that
    hold the labels when they are not among those recognised. The same bytes uploaded again
    (with the same keys) return the existing dataset with status 200."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD_BYTES:
        raise UploadTooLargeError(
            f"the upload ({declared} bytes) exceeds the limit of {limit} bytes "
            "(MLFT_MAX_UPLOAD_BYTES)"
        )
    with upload_spool(settings.data_dir / "uploads", limit) as spool:
        file, keys = await _file_part(request, limit)
        try:
            await _spool(file, spool)
        finally:
            await file.close()
        plain = await run_in_threadpool(spool.finish)
        existing = await run_in_threadpool(find_same_upload, session, context.storage, plain, keys)
        if existing is not None:
            response.status_code = status.HTTP_200_OK
            return DatasetPublic.model_validate(existing)
        dataset = await run_in_threadpool(
            register_dataset, session, context.storage, plain, stored_name(file.filename), keys
        )
    return DatasetPublic.model_validate(dataset)


async def _file_part(request: Request, limit: int) -> tuple[UploadFile, LabelKeys]:
    """The `file` part and any label keys named, parsed while the body streams in; the body is
    cut off at the limit."""
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
    return file, _label_keys(form)


def _label_keys(form: Any) -> LabelKeys:
    named = {}
    for label in LABELS:
        value = form.get(f"{label}_key")
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > 100:
            raise InvalidDatasetError(f"form field {label}_key must be a key name (1-100 chars)")
        named[f"{label}_key"] = value.strip()
    return LabelKeys.of(named)


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
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
    session: SessionDep, filters: DatasetFilters, limit: LimitParam = 100, offset: OffsetParam = 0
) -> DatasetsPublic:
    """The project's datasets matching the filters, newest first, with `total` and
    `has_more`."""
    page = list_datasets(session, filters, limit=limit, offset=offset)
    data = [DatasetPublic.model_validate(dataset) for dataset in page.data]
    return DatasetsPublic(data=data, **DatasetsPublic.paging(page))


@router.get("/{dataset_id}", response_model=DatasetPublic)
def read_dataset(dataset_id: str, session: SessionDep) -> DatasetPublic:
    return DatasetPublic.model_validate(get_dataset(session, dataset_id))
