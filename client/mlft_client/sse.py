"""Server-sent events as the mlft server writes them: an `event:` name and one JSON `data:` line."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobEvent:
    """`name` is "state", "epoch" or "log"; `data` is the event's JSON object."""

    name: str
    data: dict[str, Any]


def parse_events(lines: Iterable[str]) -> Iterator[JobEvent]:
    """Events from the lines of a `text/event-stream` body (comments are keep-alives)."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield JobEvent(name, json.loads("\n".join(data)))
            name, data = "message", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
