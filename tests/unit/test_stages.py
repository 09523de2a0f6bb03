"""core.service.stages: a piece of work is a list of steps over one state, with a stop check
between."""

import pytest

from core.service.stages import Stage, WorkStopped, run_stages


def test_stages_run_in_order_and_each_named_stage_is_recorded_before_it_runs() -> None:
    events: list[str] = []
    stages = [
        Stage("first", lambda state: state.append("ran first")),
        Stage(None, lambda state: state.append("ran unnamed")),
        Stage("second", lambda state: state.append("ran second")),
    ]

    run_stages(stages, events, record=lambda name: events.append(name), should_stop=lambda: False)

    assert events == ["first", "ran first", "ran unnamed", "second", "ran second"]


def test_stopped_work_stops_before_the_next_stage() -> None:
    ran: list[str] = []
    stages = [
        Stage("first", lambda state: state.append("first")),
        Stage("second", lambda state: state.append("second")),
    ]

    with pytest.raises(WorkStopped):
        run_stages(stages, ran, record=lambda _: None, should_stop=lambda: bool(ran))

    assert ran == ["first"]
