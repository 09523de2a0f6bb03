from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status

from api.deps import ContextDep, DispatchDep, LimitParam, OffsetParam, SessionDep
from api.schemas import ReplaySetPublic, ReplaySetsPublic
from core.service.jobs import cancel
from core.workflows.replay_sets import (
    ReplaySetSpec,
    get_replay_set,
    list_replay_sets,
    submit_replay_set,
)

router = APIRouter(prefix="/replay-sets", tags=["replay sets"])
REPLAY_SET_EXAMPLES: dict[str, dict[str, Any]] = {
    "from_training_data": {
        "summary": "300 structures around the training data's configurations and elements",
        "value": {"train_dataset": "<train id>"},
    },
    "elements": {
        "summary": "Cu and Au, dimers and random crystals only, 1000 structures",
        "value": {
            "elements": ["Cu", "Au"],
            "size": 1000,
            "sources": ["dimer", "random_crystal"],
        },
    },
    "pool": {
        "summary": "Pick a diverse subset of your own pretraining-like data",
        "value": {"train_dataset": "<train id>", "pool_datasets": ["<pool id>"], "sources": []},
    },
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ReplaySetPublic,
    responses={
        200: {
            "description": "a replay set with the same inputs exists and is reused",
            "model": ReplaySetPublic,
        },
    },
)
def create_replay_set(
    spec: Annotated[ReplaySetSpec, Body(openapi_examples=REPLAY_SET_EXAMPLES)],
    session: SessionDep,
    context: ContextDep,
    dispatch_work: DispatchDep,
    response: Response,
) -> ReplaySetPublic:
    """Build a diverse replay set labelled by the foundation: candidates from the user's own
    configurations (rattled, strained, supercells, vacancies, slabs), dimers, random crystals
    and pool datasets; near-duplicates removed; chosen by farthest-point sampling on the
    foundation's descriptors. The same inputs reuse the set already built (200)."""
    submitted = submit_replay_set(session, spec, context)
    if submitted.created:
        dispatch_work(session, "replay_set", submitted.replay_set.id)
    else:
        response.status_code = status.HTTP_200_OK
    return ReplaySetPublic.model_validate(submitted.replay_set)


@router.get("", response_model=ReplaySetsPublic)
def read_replay_sets(
    session: SessionDep, limit: LimitParam = 100, offset: OffsetParam = 0
) -> ReplaySetsPublic:
    replay_sets = list_replay_sets(session, limit=limit, offset=offset)
    return ReplaySetsPublic(
        data=[ReplaySetPublic.model_validate(replay_set) for replay_set in replay_sets],
        count=len(replay_sets),
    )


@router.get("/{replay_set_id}", response_model=ReplaySetPublic)
def read_replay_set(replay_set_id: str, session: SessionDep) -> ReplaySetPublic:
    return ReplaySetPublic.model_validate(get_replay_set(session, replay_set_id))


@router.post("/{replay_set_id}/cancel", response_model=ReplaySetPublic)
def cancel_replay_set(replay_set_id: str, session: SessionDep) -> ReplaySetPublic:
    """Cancel a queued or building replay set; a build stops at its next progress step, and the
    next request for the same inputs builds it anew."""
    return ReplaySetPublic.model_validate(cancel(session, get_replay_set(session, replay_set_id)))
