"""GET /jobs/{id}/events: a job followed live as server-sent events, straight from its row."""

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from api.routes import events as events_route
from core.artifacts.storage_keys import MACE_LOG_NAME
from core.service.job_logs import LOG_LINES_KEPT, LogShipper
from core.service.jobs import record_epoch, transition
from core.service.models import JobState
from tests.conftest import upload

Event = tuple[str, dict[str, Any]]
# A broken stream fails the test instead of hanging it (keep-alives arrive every poll here).
STREAM_DEADLINE_S = 20


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


@pytest.fixture(autouse=True)
def frequent_keepalives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_route, "KEEPALIVE_SECONDS", 0.1)


@pytest.fixture()
def job_id(client, train_id) -> str:
    response = client.post("/jobs", json={"train_dataset": train_id})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def sse_events(lines: Iterable[str]) -> Iterator[Event]:
    """A reading of the wire format independent of mlft_client: `event:`, `data:`, blank line."""
    deadline = time.monotonic() + STREAM_DEADLINE_S
    name, data = None, None
    for line in lines:
        assert time.monotonic() < deadline, "the event stream did not end"
        if line.startswith(":"):
            continue
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and name is not None:
            yield name, data
            name, data = None, None


def state(value: str, *, stage: str | None = None, epochs_done: int = 0) -> Event:
    return "state", {
        "state": value,
        "stage": stage,
        "epochs_done": epochs_done,
        "max_epochs": 50,
        "error": None,
    }


def test_stream_reports_a_cancellation_as_its_last_event_and_ends(client, job_id) -> None:
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = sse_events(response.iter_lines())
        first = next(stream)
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 200
        rest = list(stream)

    assert first == state("queued")
    assert rest == [state("cancelled")]


def test_stream_emits_stage_changes_and_each_new_epoch_in_order(client, app, job_id) -> None:
    entries = [
        {"epoch": None, "head": "target", "loss": 2.0, "valid_energy_rmse_mev_per_atom": 90.0},
        {"epoch": 0, "head": "target", "loss": 1.0, "valid_energy_rmse_mev_per_atom": 30.0},
    ]
    sessions = app.state.context.sessions
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        stream = sse_events(response.iter_lines())
        first = next(stream)
        with sessions() as session:
            # One update, so the stream cannot see `running` before its stage.
            transition(session, job_id, JobState.QUEUED, JobState.RUNNING, stage="training")
        running = next(stream)
        with sessions() as session:
            for entry in entries:
                record_epoch(session, job_id, entry)
        epochs = [next(stream) for _ in entries]
        with sessions() as session:
            transition(session, job_id, JobState.RUNNING, JobState.CANCELLED)
        rest = list(stream)

    assert first == state("queued")
    assert running == state("running", stage="training")
    assert epochs == [("epoch", entry) for entry in entries]
    assert rest == [state("cancelled", stage="training", epochs_done=1)]


def test_a_late_subscriber_gets_the_epochs_so_far_before_the_final_state(
    client, app, job_id
) -> None:
    entry = {"epoch": 0, "head": "target", "loss": 1.0}
    with app.state.context.sessions() as session:
        transition(session, job_id, JobState.QUEUED, JobState.RUNNING)
        record_epoch(session, job_id, entry)
        transition(session, job_id, JobState.RUNNING, JobState.FAILED, error="out of memory")

    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        received = list(sse_events(response.iter_lines()))

    assert received == [
        ("epoch", entry),
        ("state", {**state("failed", epochs_done=1)[1], "error": "out of memory"}),
    ]


def test_log_lines_stream_on_request_and_a_partial_line_waits(
    client, app, job_id, tmp_path
) -> None:
    # The worker's folder, which the API never reads: the lines reach it through the database.
    log = tmp_path / "worker" / MACE_LOG_NAME
    log.parent.mkdir()
    shipper = LogShipper(app.state.context.sessions, job_id, log)
    log.write_text("INFO: Using foundation model\nINFO: Epoch 0: loss=1.0\nINFO: Epo")
    shipper.ship()

    with client.stream("GET", f"/jobs/{job_id}/events", params={"log": "true"}) as response:
        stream = sse_events(response.iter_lines())
        received = [next(stream) for _ in range(3)]
        client.post(f"/jobs/{job_id}/cancel")
        rest = list(stream)

    assert received == [
        state("queued"),
        ("log", {"line": "INFO: Using foundation model"}),
        ("log", {"line": "INFO: Epoch 0: loss=1.0"}),
    ]
    assert rest == [state("cancelled")]


def test_the_whole_log_is_downloaded_from_storage_once_the_job_ended(
    client, app, job_id, tmp_path
) -> None:
    log = tmp_path / MACE_LOG_NAME
    shipper = LogShipper(app.state.context.sessions, job_id, log)
    log.write_text("".join(f"line {n}\n" for n in range(LOG_LINES_KEPT + 10)))
    running = client.get(f"/jobs/{job_id}/log")
    shipper.store(app.state.context.storage)
    client.post(f"/jobs/{job_id}/cancel")

    ended = client.get(f"/jobs/{job_id}/log")

    assert running.status_code == 409  # like a model asked for before it exists
    assert ended.status_code == 200
    assert ended.text == log.read_text()


def test_stream_of_an_unknown_job_is_a_404_naming_it(client) -> None:
    response = client.get("/jobs/nope/events")

    assert response.status_code == 404
    assert response.json()["detail"] == "job nope does not exist"


# ---- resuming (issue 28): ids, retry and Last-Event-ID


def raw_frames(client, job_id: str, headers: dict[str, str] | None = None, **params) -> list[str]:
    """The stream of a job that has ended, as its frames of text."""
    with client.stream("GET", f"/jobs/{job_id}/events", headers=headers, params=params) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    return [frame for frame in text.split("\n\n") if frame]


def fields(frame: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in frame.splitlines() if not line.startswith(":"))


def ended_with_epochs(app, job_id: str, count: int) -> list[dict[str, Any]]:
    entries = [{"epoch": n, "head": "target", "loss": 1.0 / (n + 1)} for n in range(count)]
    with app.state.context.sessions() as session:
        transition(session, job_id, JobState.QUEUED, JobState.RUNNING, stage="training")
        for entry in entries:
            record_epoch(session, job_id, entry)
        transition(session, job_id, JobState.RUNNING, JobState.SUCCEEDED)
    return entries


def test_the_stream_says_how_to_retry_and_every_event_has_an_id(client, app, job_id) -> None:
    ended_with_epochs(app, job_id, 2)

    frames = raw_frames(client, job_id)

    assert frames[0] == f"retry: {events_route.RETRY_MS}"
    events = [fields(frame) for frame in frames[1:]]
    assert [event["event"] for event in events] == ["epoch", "epoch", "state"]
    assert events[0]["id"] != events[1]["id"]
    # The final state stands where the last epoch left the stream: nothing comes between.
    assert events[2]["id"] == events[1]["id"]


def test_a_finished_job_sends_its_final_state_once(client, app, job_id) -> None:
    ended_with_epochs(app, job_id, 3)

    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        received = list(sse_events(response.iter_lines()))

    states = [data for name, data in received if name == "state"]
    assert states == [state("succeeded", stage="training", epochs_done=3)[1]]
    assert received[-1][0] == "state"


def test_a_reconnect_with_last_event_id_goes_on_after_that_event(client, app, job_id) -> None:
    entries = ended_with_epochs(app, job_id, 4)
    frames = [fields(frame) for frame in raw_frames(client, job_id)[1:]]
    second_epoch = frames[1]["id"]

    resumed = raw_frames(client, job_id, headers={"Last-Event-ID": second_epoch})
    at_the_end = raw_frames(client, job_id, headers={"Last-Event-ID": frames[-1]["id"]})

    events = [fields(frame) for frame in resumed[1:]]
    assert [json.loads(event["data"]) for event in events[:-1]] == entries[2:]
    assert events[-1]["event"] == "state"
    # A client that had everything gets the final state alone, once.
    assert [fields(frame)["event"] for frame in at_the_end[1:]] == ["state"]


def test_a_last_event_id_of_another_attempt_or_not_ours_starts_over(client, app, job_id) -> None:
    entries = ended_with_epochs(app, job_id, 2)

    other_attempt = raw_frames(client, job_id, headers={"Last-Event-ID": "7.2.0"})
    not_ours = raw_frames(client, job_id, headers={"Last-Event-ID": "abc"})

    for frames in (other_attempt, not_ours):
        events = [fields(frame) for frame in frames[1:]]
        assert [json.loads(event["data"]) for event in events[:2]] == entries


def test_log_lines_resume_after_the_last_one_received(client, app, job_id, tmp_path) -> None:
    log = tmp_path / MACE_LOG_NAME
    shipper = LogShipper(app.state.context.sessions, job_id, log)
    log.write_text("first\nsecond\nthird\n")
    shipper.ship()
    client.post(f"/jobs/{job_id}/cancel")
    frames = [fields(frame) for frame in raw_frames(client, job_id, log="true")[1:]]
    first_line = next(frame for frame in frames if frame["event"] == "log")

    resumed = raw_frames(client, job_id, headers={"Last-Event-ID": first_line["id"]}, log="true")

    lines = [
        json.loads(event["data"])["line"]
        for event in map(fields, resumed[1:])
        if event["event"] == "log"
    ]
    assert lines == ["second", "third"]
