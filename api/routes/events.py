"""GET /jobs/{id}/events: a job's progress as server-sent events, read from its row (and its
log lines from the table its worker ships them to).

The database is the truth, so the stream polls the row (a new short session each time) rather than
listening to the worker; any API process can serve any job's stream.

Every event carries an `id:`, the stream's position after it (StreamCursor), and the stream starts
with `retry:`: a client that lost the connection, after a network hiccup or an API process
restart, reconnects with `Last-Event-ID` and goes on from there, without the epochs and log lines
it already has (issue 28).
"""

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header
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
# How long a client (browsers' EventSource does it itself) waits before reconnecting.
RETRY_MS = 3000
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EVENT_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "`state` on every state or stage change (the first event is the current "
        "state), `epoch` for each record of the job's `epochs` (those already there first), "
        "`log` for each new line of mace-torch's output when `log=true`; the stream ends after "
        "the job reaches succeeded, failed or cancelled, or after an `error` event (the "
        "token was revoked). Each event has an `id`; reconnect with the header "
        "`Last-Event-ID: <id>` to go on after that event (the current state first, then only "
        "the epochs and log lines not yet sent). The stream's first line is `retry: <ms>`.",
    }
}


@dataclass(frozen=True)
class StreamCursor:
    """Where a job's stream stands: the job's attempt (a retried job's epochs start over), the
    epoch records sent and the last log line sent. Its text is each event's `id`."""

    attempt: int = 0
    epochs: int = 0
    log_seq: int = 0

    def __str__(self) -> str:
        return f"{self.attempt}.{self.epochs}.{self.log_seq}"

    @classmethod
    def parse(cls, text: str | None) -> "StreamCursor | None":
        """The cursor a `Last-Event-ID` names; None for one this service did not write (the
        stream then starts from the beginning, as without the header)."""
        if text is None or not re.fullmatch(r"\d{1,9}\.\d{1,9}\.\d{1,12}", text.strip()):
            return None
        attempt, epochs, log_seq = (int(part) for part in text.strip().split("."))
        return cls(attempt, epochs, log_seq)


@router.get("/{job_id}/events", response_class=StreamingResponse, responses=EVENT_STREAM_DOC)
def stream_job_events(
    job_id: str,
    context: ContextDep,
    session: SessionDep,
    settings: SettingsDep,
    token: TokenDep,
    log: bool = False,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=64,
            description="the `id` of the last event received: go on after it",
        ),
    ] = None,
) -> StreamingResponse:
    """Follow a job live as server-sent events until it ends. Browsers' `EventSource` sends
    no headers: this route alone also takes the token as `?access_token=`."""
    # The caller's project session proves the job is theirs; the stream then polls by id.
    first = read_public(session, job_id)
    session.close()
    resume = StreamCursor.parse(last_event_id)
    tail = LogFollower(context, job_id, after=resume.log_seq if resume else 0) if log else None
    authorized = token_check(context, settings, token)
    return StreamingResponse(
        job_events(context, first, tail, authorized, resume),
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

    def __init__(self, context: JobContext, job_id: str, after: int = 0) -> None:
        self.context = context
        self.job_id = job_id
        self.seq = after

    def new_lines(self) -> list[tuple[int, str]]:
        """(number, line) of each line after the last one returned."""
        with self.context.sessions() as session:
            rows = lines_after(session, self.job_id, self.seq)
        if rows:
            self.seq = rows[-1].seq
        return [(row.seq, row.line) for row in rows]


async def job_events(
    context: JobContext,
    job: JobPublic,
    tail: LogFollower | None,
    authorized: Callable[[], bool] | None = None,
    resume: StreamCursor | None = None,
) -> AsyncIterator[str]:
    """The stream's text: `retry:` first, then events (each with its `id:`) and keep-alive
    comments until the job ends. `resume`: where a reconnecting client stood; the current state
    comes first all the same, so a client that resumes knows where the job is."""
    shown: tuple[JobState, str | None] | None = None
    # The epochs of another attempt than the client's started over.
    epochs_sent = resume.epochs if resume is not None and resume.attempt == job.attempts else 0
    log_seq = tail.seq if tail is not None else 0
    yield f"retry: {RETRY_MS}\n\n"
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
        before = StreamCursor(job.attempts, epochs_sent, log_seq)
        frames = []
        for number, entry in enumerate(epochs[epochs_sent:], start=epochs_sent + 1):
            cursor = StreamCursor(job.attempts, number, log_seq)
            frames.append(event_frame("epoch", entry.to_json(), cursor))
        epochs_sent = len(epochs)
        if tail is not None:
            for log_seq, line in await run_in_threadpool(tail.new_lines):
                cursor = StreamCursor(job.attempts, epochs_sent, log_seq)
                frames.append(event_frame("log", {"line": line}, cursor))
        if (job.state, job.progress.stage) != shown:
            shown = (job.state, job.progress.stage)
            # The terminal state comes last, so a client that stops there has seen everything;
            # another state comes first, with the position before what follows it.
            if job.state in TERMINAL_STATES:
                after = StreamCursor(job.attempts, epochs_sent, log_seq)
                frames = [*frames, event_frame("state", state_data(job), after)]
            else:
                frames = [event_frame("state", state_data(job), before), *frames]
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


def event_frame(name: str, data: dict[str, Any], cursor: StreamCursor | None = None) -> str:
    # json.dumps writes no newlines, so one `data:` line carries the whole object.
    event_id = f"id: {cursor}\n" if cursor is not None else ""
    return f"{event_id}event: {name}\ndata: {json.dumps(data)}\n\n"
