"""Server-sent events as the mlft server writes them: an `event:` name, one JSON `data:` line, and
(issue 28) an `id:` to resume from and a `retry:` reconnection delay."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobEvent:
    """`name` is "state", "epoch", "log" or "error"; `data` is the event's JSON object; `id` the
    stream position the server gave it (sent back as Last-Event-ID on a reconnect)."""

    name: str
    data: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class RetryHint:
    """A `retry:` field: how long the server asks a client to wait before reconnecting."""

    milliseconds: int


def parse_events(lines: Iterable[str]) -> Iterator[JobEvent | RetryHint]:
    """Events from the lines of a `text/event-stream` body (comments are keep-alives), as the
    HTML standard's parser reads them: an event is dispatched at a blank line, an `id:` holds
    for the events after it, a `retry:` of digits is a hint on its own."""
    name, data, event_id = "message", list[str](), None
    for line in lines:
        if not line:
            if data:
                yield JobEvent(name, json.loads("\n".join(data)), event_id)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\x00" not in value:
            event_id = value or None
        elif field == "retry" and value.isdigit():
            yield RetryHint(int(value))
