"""The query parameters of the lists (GET /jobs, /sweeps, /evaluations, /datasets), read into
core.service.listing.ListFilters; each list takes those that apply to its rows."""

from typing import Annotated

from fastapi import Depends, Query

from core.science.strategy_table import StrategyName
from core.service.listing import ListFilters, TagFilter
from core.service.models import JobState

StateQuery = Annotated[JobState | None, Query(description="only rows in this state")]
StrategyQuery = Annotated[StrategyName | None, Query(description="only runs of this strategy")]
FoundationQuery = Annotated[
    str | None,
    Query(max_length=100, description="only runs starting from this foundation model"),
]
NameQuery = Annotated[str | None, Query(max_length=255, description="exactly this name")]
NameContainsQuery = Annotated[
    str | None,
    Query(max_length=255, description="names containing this text (case-insensitive)"),
]
TagQuery = Annotated[
    list[str],
    Query(
        max_length=32,
        description="`key=value` (the tag has this value) or `key` (the tag is set); repeat "
        "the parameter to require several",
    ),
]


def _tags(tag: list[str]) -> tuple[TagFilter, ...]:
    return tuple(TagFilter.parse(text) for text in tag)


def job_filters(
    state: StateQuery = None,
    strategy: StrategyQuery = None,
    foundation: FoundationQuery = None,
    name: NameQuery = None,
    name_contains: NameContainsQuery = None,
    tag: TagQuery = [],  # noqa: B006 (FastAPI copies a query list's default)
    sweep: Annotated[str | None, Query(max_length=64, description="only this sweep's jobs")] = None,
) -> ListFilters:
    return ListFilters(
        state=state,
        strategy=strategy,
        foundation=foundation,
        name=name,
        name_contains=name_contains,
        tags=_tags(tag),
        sweep=sweep,
    )


def sweep_filters(
    state: Annotated[
        JobState | None, Query(description="sweeps with at least one job in this state")
    ] = None,
    strategy: Annotated[
        StrategyName | None, Query(description="sweeps that run this strategy")
    ] = None,
    foundation: FoundationQuery = None,
    name: NameQuery = None,
    name_contains: NameContainsQuery = None,
    tag: TagQuery = [],  # noqa: B006
) -> ListFilters:
    return ListFilters(
        state=state,
        strategy=strategy,
        foundation=foundation,
        name=name,
        name_contains=name_contains,
        tags=_tags(tag),
    )


def evaluation_filters(
    state: StateQuery = None,
    foundation: Annotated[
        str | None,
        Query(max_length=100, description="evaluations of, or compared with, this foundation"),
    ] = None,
    job: Annotated[
        str | None, Query(max_length=64, description="evaluations of this job's model")
    ] = None,
) -> ListFilters:
    return ListFilters(state=state, foundation=foundation, job=job)


def dataset_filters(
    name: Annotated[
        str | None, Query(max_length=255, description="exactly this (file) name")
    ] = None,
    name_contains: NameContainsQuery = None,
) -> ListFilters:
    return ListFilters(name=name, name_contains=name_contains)


JobFilters = Annotated[ListFilters, Depends(job_filters)]
SweepFilters = Annotated[ListFilters, Depends(sweep_filters)]
EvaluationFilters = Annotated[ListFilters, Depends(evaluation_filters)]
DatasetFilters = Annotated[ListFilters, Depends(dataset_filters)]
