"""The client's own logic, against scripted HTTP answers (httpx.MockTransport): reconnecting an
events stream, typed errors from structured bodies, paging, and the rich progress display.
What the real server sends is checked in tests/api/test_client_*.py."""

import io
import json
import re
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from rich.console import Console

from mlft_client import Backoff, Client, ConnectionFailed, NotFound, ValidationFailed
from mlft_client import watching as watching_module
from mlft_client.errors import ServiceUnavailable
from mlft_client.progress import JobProgress, counted_stage
from mlft_client.sse import JobEvent, RetryHint, parse_events

URL = "http://mlft.example"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class BrokenStream(httpx.SyncByteStream):
    """A body that sends `chunks` and then loses its connection, as a dropped proxy does."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def frame(name: str, data: dict, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def scripted(
    answers: list[Callable[[httpx.Request], httpx.Response]],
) -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[len(seen) - 1](request)

    return Client(URL, http=httpx.Client(transport=httpx.MockTransport(server))), seen


@pytest.fixture()
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(watching_module.time, "sleep", slept.append)
    return slept


def test_events_resume_with_last_event_id_after_a_drop_honouring_retry_after_and_retry(
    sleeps: list[float],
) -> None:
    running = {"state": "running", "stage": "training", "epochs_done": 1, "max_epochs": 3}
    client, seen = scripted(
        [
            lambda _: httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "7"}),
            lambda _: httpx.Response(
                200,
                stream=BrokenStream(b"retry: 2000\n\n", frame("state", running, "5")),
            ),
            lambda _: httpx.Response(
                200,
                content=frame("epoch", {"epoch": 2}, "6")
                + frame("state", {**running, "state": "succeeded"}, "7"),
            ),
        ]
    )

    events = list(client.events("j1"))

    assert [(event.name, event.id) for event in events] == [
        ("state", "5"),
        ("epoch", "6"),
        ("state", "7"),
    ]
    assert [request.headers.get("Last-Event-ID") for request in seen] == [None, None, "5"]
    # Retry-After exactly; then the server's retry: 2000 ms with its jitter.
    assert sleeps[0] == 7
    assert 1.6 <= sleeps[1] <= 2.4


def test_events_back_off_exponentially_and_give_up_after_the_attempts(
    sleeps: list[float],
) -> None:
    def drop(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client, seen = scripted([drop] * 4)

    with pytest.raises(ConnectionFailed):
        list(client.events("j1", backoff=Backoff(first=1, ceiling=3, attempts=4)))

    assert len(seen) == 4
    # 1, 2, then the ceiling of 3 s, each within its ±20 % jitter.
    assert [
        low <= delay <= high
        for delay, (low, high) in zip(sleeps, [(0.8, 1.2), (1.6, 2.4), (2.4, 3.6)], strict=True)
    ] == [True] * 3


def test_a_stream_that_ends_cleanly_before_the_final_state_is_resumed(
    sleeps: list[float],
) -> None:
    queued = {"state": "queued", "stage": None, "epochs_done": 0, "max_epochs": 3}
    client, seen = scripted(
        [
            lambda _: httpx.Response(200, content=frame("state", queued, "1")),
            lambda _: httpx.Response(200, json={"id": "j1", "state": "running"}),
            lambda _: httpx.Response(200, content=frame("state", {**queued, "state": "failed"})),
        ]
    )

    events = list(client.events("j1"))

    assert [event.data["state"] for event in events] == ["queued", "failed"]
    assert [request.url.path for request in seen] == [
        "/jobs/j1/events",
        "/jobs/j1",
        "/jobs/j1/events",
    ]


def test_a_refusal_that_will_not_change_is_raised_at_once(sleeps: list[float]) -> None:
    client, _ = scripted([lambda _: httpx.Response(404, json={"detail": "job j1 does not exist"})])

    with pytest.raises(NotFound, match="job j1 does not exist"):
        list(client.events("j1"))
    assert sleeps == []


def test_structured_errors_become_typed_exceptions_with_code_and_param() -> None:
    body = {
        "detail": "hyperparameters.lr: Input should be greater than 0",
        "code": "validation_error",
        "param": "hyperparameters.lr",
    }
    client, _ = scripted([lambda _: httpx.Response(422, json=body)])

    with pytest.raises(ValidationFailed) as raised:
        client.create_job({"train_dataset": "d"})

    assert (raised.value.status, raised.value.code) == (422, "validation_error")
    assert raised.value.param == "hyperparameters.lr"
    assert str(raised.value) == f"{body['detail']} (HTTP 422)"


def test_an_unstructured_fastapi_422_still_names_the_param() -> None:
    detail = [{"loc": ["body", "split", "test_fraction"], "msg": "too big", "type": "x"}]
    client, _ = scripted([lambda _: httpx.Response(422, json={"detail": detail})])

    with pytest.raises(ValidationFailed) as raised:
        client.create_job({})

    assert raised.value.param == "split.test_fraction"
    assert raised.value.code is None
    assert raised.value.detail == "split.test_fraction: too big"


def test_a_503_carries_its_retry_after() -> None:
    client, _ = scripted(
        [lambda _: httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "12"})]
    )

    with pytest.raises(ServiceUnavailable) as raised:
        client.strategies()

    assert raised.value.retry_after == 12


def test_lists_page_by_has_more_and_send_filters_and_tags() -> None:
    pages = [
        {"data": [{"id": str(i)} for i in range(100)], "total": 150, "has_more": True},
        {"data": [{"id": str(i)} for i in range(100, 150)], "total": 150, "has_more": False},
    ]
    client, seen = scripted([lambda _, page=page: httpx.Response(200, json=page) for page in pages])

    jobs = client.jobs(state="succeeded", tags={"campaign": "cu", "round": "2"})

    assert len(jobs) == jobs.total == 150
    assert [request.url.params["offset"] for request in seen] == ["0", "100"]
    assert seen[0].url.params.get_list("tag") == ["campaign=cu", "round=2"]
    assert seen[0].url.params["state"] == "succeeded"


def test_a_limit_stops_paging_and_keeps_the_servers_total() -> None:
    page = {"data": [{"id": "a"}, {"id": "b"}], "total": 9, "has_more": True}
    client, seen = scripted([lambda _: httpx.Response(200, json=page)])

    jobs = client.jobs(limit=2)

    assert (len(jobs), jobs.total, len(seen)) == (2, 9, 1)


def test_calculator_without_mace_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mace.calculators", None)

    with pytest.raises(ImportError, match=re.escape('pip install "mlft-client[calculator]"')):
        Client(URL).calculator("j1")


def test_sse_parser_reads_ids_retry_and_skips_keepalives() -> None:
    lines = ["retry: 1500", "", ": keepalive", "", "id: 4", "event: epoch", 'data: {"epoch": 1}']

    parsed = list(parse_events([*lines, ""]))

    assert parsed == [RetryHint(1500), JobEvent("epoch", {"epoch": 1}, "4")]


def test_counted_stages_are_read_from_the_event_or_the_stage_name() -> None:
    assert counted_stage("md 1/3 120/800 steps") == counted_stage(
        "md 1/3", {"stage": "md 1/3", "done": 120, "total": 800, "unit": "steps"}
    )
    rss = counted_stage("rss foundation 12/50")
    assert rss is not None and (rss.name, rss.done, rss.total, rss.unit) == (
        "rss foundation",
        12,
        50,
        "structures",
    )
    assert counted_stage("training") is None


def job_row(state: str, stage: str | None, epochs_done: int) -> dict:
    return {
        "id": "j1",
        "state": state,
        "progress": {"stage": stage, "epochs_done": epochs_done, "max_epochs": 5, "latest": None},
        "cost": {"predicted": {"seconds_per_epoch": 10.0}},
    }


def test_live_progress_fits_80_columns_shows_eta_from_the_cost_and_evaluation_bars() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    display = JobProgress("0123456789abcdef0123456789abcdef", console)

    display.start(job_row("running", "training", 2))
    rendered = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    rendered.print(display._renderable())
    training = rendered.export_text()
    display.update(JobEvent("state", {"state": "running", "stage": "md 1/3 120/800 steps"}))
    display.update(JobEvent("state", {"state": "running", "stage": "rss 12/50"}))
    rendered.print(display._renderable())
    evaluating = rendered.export_text()
    display.finish(job_row("succeeded", None, 5))

    # 3 epochs left at the predicted 10 s each, before any epoch was watched.
    assert "2/5 epochs" in training and "eta 0:00:30" in training
    assert "md 1/3" in evaluating and "120/800 steps" in evaluating
    assert "rss" in evaluating and "12/50 structures" in evaluating
    drawn = ANSI.sub("", out.getvalue()).replace("\r", "\n").splitlines()
    assert drawn and max(len(line) for line in drawn) <= 80


def test_a_finished_job_away_from_a_terminal_is_one_line() -> None:
    out = io.StringIO()
    display = JobProgress("j1", Console(file=out, width=80, color_system=None))

    display.start(job_row("succeeded", None, 5))
    display.finish(job_row("succeeded", None, 5))

    assert out.getvalue() == "job j1 succeeded · 5/5 epochs\n"
