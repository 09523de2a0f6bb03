"""GET /jobs/{id}/events: a job's progress as server-sent events, read from its row (and its
log lines from the table its worker ships them to).

The database is the truth, so the stream polls the row (a new short session each time) rather than
listening to the worker; any API process can serve any job's stream.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, SessionDep, SettingsDep, TokenDep
from api.schemas import JobPublic
from core.config import Settings
from core.errors import AuthenticationError
from core.service.auth import authenticate
from core.service.job_logs import lines_after
from core.service.jobs import TERMINAL_STATES, JobPart, get_job
from core.service.models import JobState
from core.workflows.context import JobContext

router = APIRouter(prefix="/jobs", tags=["jobs"])
POLL_SECONDS = 0.5
# Proxies and load balancers drop connections that stay silent; a comment line keeps it open.
KEEPALIVE_SECONDS = 15.0
# An open stream checks its token again this often: a revoked token stops it.
TOKEN_RECHECK_SECONDS = 5.0
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EVENT_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "`state` on every state or stage change (the first event is the current "
        "state), `epoch` for each record of the job's `epochs` (those already there first), "
        "`log` for each new line of mace-torch's output when `log=true`; the stream ends after "
        "the job reaches succeeded, failed or cancelled, or after an `error` event (the "
        "token was revoked).",
    }
}


@router.get("/{job_id}/events", response_class=StreamingResponse, responses=EVENT_STREAM_DOC)
def stream_job_events(
    job_id: str,
    context: ContextDep,
    session: SessionDep,
    settings: SettingsDep,
    token: TokenDep,
    log: bool = False,
) -> StreamingResponse:
    """Follow a job live as server-sent events until it ends. Browsers' `EventSource` sends
    no headers: this route alone also takes the token as `?access_token=`."""
    # The caller's project session proves the job is theirs; the stream then polls by id.
    first = read_public(session, job_id)
    session.close()
    tail = LogFollower(context, job_id) if log else None
    authorized = token_check(context, settings, token)
    return StreamingResponse(
        job_events(context, first, tail, authorized),
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
    )


def token_check(
    context: JobContext, settings: Settings, token: str | None
) -> Callable[[], bool] | None:
    """Whether the stream's token is still valid (not revoked); None without tokens."""
    if settings.admin_token is None:
        return None
    admin_token = settings.admin_token.get_secret_value()

    def still_valid() -> bool:
        with context.sessions() as session:
            try:
                authenticate(session, token, admin_token)
            except AuthenticationError:
                return False
        return True

    return still_valid


def read_job(context: JobContext, job_id: str) -> JobPublic:
    with context.sessions() as session:
        return read_public(session, job_id)


def read_public(session: Session, job_id: str) -> JobPublic:
    # The stream sends the learning curve, so it reads the job with it.
    with_epochs: tuple[JobPart, ...] = ("epochs",)
    return JobPublic.of(get_job(session, job_id, include=with_epochs), with_epochs)


class LogFollower:
    """New lines of a job's log, from the table its worker ships them to (core/service/job_logs.py):
    the API reads no worker's folder. A late subscriber starts at the oldest line kept."""

    def __init__(self, context: JobContext, job_id: str) -> None:
        self.context = context
        self.job_id = job_id
        self.seq = 0

    def new_lines(self) -> list[str]:
        with self.context.sessions() as session:
            rows = lines_after(session, self.job_id, self.seq)
        if rows:
            self.seq = rows[-1].seq
        return [row.line for row in rows]


async def job_events(
    context: JobContext,
    job: JobPublic,
    tail: LogFollower | None,
    authorized: Callable[[], bool] | None = None,
) -> AsyncIterator[str]:
    shown: tuple[JobState, str | None] | None = None
    epochs_sent = 0
    last_sent = last_checked = time.monotonic()
    while True:
        if authorized is not None and time.monotonic() - last_checked >= TOKEN_RECHECK_SECONDS:
            last_checked = time.monotonic()
            if not await run_in_threadpool(authorized):
                yield event_frame("error", {"detail": "the API token was revoked"})
                return
        # A retried job starts its epochs over.
        epochs = job.epochs or []
        if len(epochs) < epochs_sent:
            epochs_sent = 0
        frames = [event_frame("epoch", entry.to_json()) for entry in epochs[epochs_sent:]]
        epochs_sent = len(epochs)
        if tail is not None:
            lines = await run_in_threadpool(tail.new_lines)
            frames += [event_frame("log", {"line": line}) for line in lines]
        if (job.state, job.progress.stage) != shown:
            shown = (job.state, job.progress.stage)
            # The terminal state comes last, so a client that stops there has seen everything.
            state = event_frame("state", state_data(job))
            frames = [*frames, state] if job.state in TERMINAL_STATES else [state, *frames]
        if not frames and time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            frames = [": keepalive\n\n"]
        if frames:
            yield "".join(frames)
            last_sent = time.monotonic()
        if job.state in TERMINAL_STATES:
            return
        await asyncio.sleep(POLL_SECONDS)
        job = await run_in_threadpool(read_job, context, job.id)


def state_data(job: JobPublic) -> dict[str, Any]:
    return {
        "state": job.state.value,
        "stage": job.progress.stage,
        "epochs_done": job.progress.epochs_done,
        "max_epochs": job.progress.max_epochs,
        "error": job.error,
    }


def event_frame(name: str, data: dict[str, Any]) -> str:
    # json.dumps writes no newlines, so one `data:` line carries the whole object.
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
