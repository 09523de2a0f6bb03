"""Following a job's events stream across real networks: after a drop, a proxy's timeout or a
restarted server the stream is opened again with `Last-Event-ID`, after a backoff (the server's
`retry:` hint, or its `Retry-After` on a 503), until the job ends."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from mlft_client.errors import ConnectionFailed, MlftError, Unauthorized
from mlft_client.reconnect import Backoff, is_transient
from mlft_client.sse import JobEvent, RetryHint, parse_events
from mlft_client.transport import Transport

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "stopped_early"})
# The server sends a keep-alive every 15 s; four missed ones mean the connection is dead.
STREAM_READ_TIMEOUT = 60.0


def follow_events(
    transport: Transport,
    job_id: str,
    *,
    log: bool = False,
    timeout: float | None = None,
    backoff: Backoff | None = None,
) -> Iterator[JobEvent]:
    """The job's events until its final state, reconnecting as often as the backoff allows;
    TimeoutError after `timeout` seconds. A server that gives events ids resumes after the last
    one seen; one that does not starts again from the current state (the epochs come again,
    which a consumer that keys them by epoch takes in its stride)."""
    policy = backoff or Backoff()
    deadline = None if timeout is None else time.monotonic() + timeout
    expired = f"job {job_id} did not finish within {timeout or 0:.0f} s"
    path = f"/jobs/{job_id}/events"
    params = {"log": "true"} if log else {}
    last_id: str | None = None
    failures = 0
    while True:
        read_timeout = STREAM_READ_TIMEOUT
        if deadline is not None:
            read_timeout = min(max(deadline - time.monotonic(), 0.1), STREAM_READ_TIMEOUT)
        headers = {"Last-Event-ID": last_id} if last_id is not None else {}
        error: MlftError | None = None
        try:
            with transport.stream(
                "GET", path, params=params, headers=headers, read_timeout=read_timeout
            ) as response:
                for item in parse_events(_lines_until(response.iter_lines(), deadline, expired)):
                    if isinstance(item, RetryHint):
                        policy = (backoff or Backoff()).hinted(item.milliseconds)
                        continue
                    failures = 0
                    last_id = item.id if item.id is not None else last_id
                    if item.name == "error":
                        raise Unauthorized(401, str(item.data.get("detail", "stream refused")))
                    yield item
                    if item.name == "state" and item.data.get("state") in TERMINAL_STATES:
                        return
            # A clean end before the final state: the server restarted, or has nothing after
            # our Last-Event-ID for a job that ended meanwhile.
            if transport.json("GET", f"/jobs/{job_id}")["state"] in TERMINAL_STATES:
                return
        except MlftError as raised:
            # A read that times out after the deadline is the caller's timeout, not a fault.
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(expired) from raised
            if not is_transient(raised):
                raise
            error = raised
        failures += 1
        if policy.gives_up(failures):
            raise error or ConnectionFailed(
                None, f"the events stream of job {job_id} ended {failures} times in a row"
            )
        delay = policy.delay(failures, error)
        if deadline is not None and time.monotonic() + delay >= deadline:
            raise TimeoutError(expired) from error
        time.sleep(delay)


def _lines_until(lines: Iterable[str], deadline: float | None, expired: str) -> Iterator[str]:
    # Keep-alive comments arrive while a job is quiet, so the deadline is checked on every line.
    for line in lines:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(expired)
        yield line
