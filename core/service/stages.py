"""Work as a list of named steps over one shared state, run in order with a stop check between
steps: adding a step to a job, an evaluation or a replay-set build is one entry in its list."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")


class WorkStopped(Exception):
    """The work was cancelled, or its lease taken over by another worker, while it ran."""


@dataclass(frozen=True)
class Stage(Generic[S]):
    """One step: `run` reads the shared state and updates it. `name` is recorded before the
    step runs; None for a step that records its own stages (the evaluation suite) or none."""

    name: str | None
    run: Callable[[S], None]


def run_stages(
    stages: Sequence[Stage[S]],
    state: S,
    *,
    record: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> S:
    """Run `stages` on `state`; WorkStopped before the first step that finds the work stopped."""
    for stage in stages:
        if should_stop():
            raise WorkStopped(stage.name or stage.run.__name__)
        if stage.name is not None:
            record(stage.name)
        stage.run(state)
    return state
