"""The lists of jobs, sweeps, evaluations and datasets: filters, newest first, one page and the
total (issue 28). One place builds every list's query, so the lists filter alike.

Filters read columns (state, name, tags) and the JSON spec (strategy, foundation) with
SQLAlchemy's JSON paths, which PostgreSQL and the embedded SQLite both understand.
"""

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.errors import InvalidQueryError
from core.service.models import Base, Dataset, Evaluation, Job, JobState, Sweep
from core.service.run_labels import TAG_KEY_PATTERN

Row = TypeVar("Row")
Table = TypeVar("Table", bound=Base)
# ilike's wildcards, taken literally in a `name_contains` filter.
_LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class TagFilter:
    """`key=value`: the tag has that value; `key` alone: the tag is set, to anything."""

    key: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> "TagFilter":
        key, sep, value = text.partition("=")
        if not TAG_KEY_PATTERN.fullmatch(key):
            raise InvalidQueryError(
                f"tag filter {text[:80]!r}: write it as key=value (or key alone for any value), "
                "the key as tags have them (letters, digits, _ . - / :)",
                param="tag",
            )
        return cls(key, value if sep else None)


@dataclass(frozen=True)
class ListFilters:
    """What a list is narrowed to; None (or empty) filters nothing. Each list reads the filters
    that apply to its rows (docs/runs-and-mlflow.md lists them)."""

    def __post_init__(self) -> None:
        # PostgreSQL's text refuses NUL: a filter holding one names nothing it could match.
        for name in ("strategy", "foundation", "name", "name_contains", "sweep", "job"):
            value = getattr(self, name)
            if isinstance(value, str) and "\x00" in value:
                raise InvalidQueryError(f"filter {name} contains a NUL byte", param=name)
        for tag in self.tags:
            if "\x00" in tag.key or "\x00" in (tag.value or ""):
                raise InvalidQueryError("a tag filter contains a NUL byte", param="tag")

    state: JobState | None = None
    strategy: str | None = None
    foundation: str | None = None
    name: str | None = None
    name_contains: str | None = None
    tags: tuple[TagFilter, ...] = ()
    sweep: str | None = None
    job: str | None = None


NO_FILTERS = ListFilters()


@dataclass
class Page(Generic[Row]):
    data: list[Row]
    total: int
    offset: int = 0

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.data) < self.total


def _spec_text(column: Any, *path: str) -> ColumnElement[str]:
    return column[path].as_string()


def _named(
    name_column: InstrumentedAttribute[Any], filters: ListFilters
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.name is not None:
        conditions.append(name_column == filters.name)
    if filters.name_contains:
        escaped = (
            filters.name_contains.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
            .replace("%", f"{_LIKE_ESCAPE}%")
            .replace("_", f"{_LIKE_ESCAPE}_")
        )
        conditions.append(name_column.ilike(f"%{escaped}%", escape=_LIKE_ESCAPE))
    return conditions


def _tagged(tags_column: Any, filters: ListFilters) -> list[ColumnElement[bool]]:
    conditions = []
    for tag in filters.tags:
        value = tags_column[tag.key].as_string()
        conditions.append(value.is_not(None) if tag.value is None else value == tag.value)
    return conditions


def job_conditions(filters: ListFilters) -> list[ColumnElement[bool]]:
    conditions = [*_named(Job.name, filters), *_tagged(Job.tags, filters)]
    if filters.state is not None:
        conditions.append(Job.state == filters.state)
    if filters.strategy is not None:
        conditions.append(_spec_text(Job.spec, "strategy", "name") == filters.strategy)
    if filters.foundation is not None:
        conditions.append(_spec_text(Job.spec, "foundation_model") == filters.foundation)
    if filters.sweep is not None:
        conditions.append(Job.sweep_id == filters.sweep)
    return conditions


def sweep_conditions(filters: ListFilters) -> list[ColumnElement[bool]]:
    conditions = [*_named(Sweep.name, filters), *_tagged(Sweep.tags, filters)]
    if filters.foundation is not None:
        conditions.append(_spec_text(Sweep.spec, "base", "foundation_model") == filters.foundation)
    # A sweep "has" a strategy or a state when one of its jobs does.
    job_filters = ListFilters(state=filters.state, strategy=filters.strategy)
    if filters.state is not None or filters.strategy is not None:
        conditions.append(exists().where(Job.sweep_id == Sweep.id, *job_conditions(job_filters)))
    return conditions


def evaluation_conditions(filters: ListFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.state is not None:
        conditions.append(Evaluation.state == filters.state)
    if filters.foundation is not None:
        # The foundation evaluated, or the one it is compared with.
        conditions.append(
            or_(
                _spec_text(Evaluation.spec, "model", "foundation_model") == filters.foundation,
                _spec_text(Evaluation.spec, "foundation_model") == filters.foundation,
            )
        )
    if filters.job is not None:
        conditions.append(_spec_text(Evaluation.spec, "model", "job") == filters.job)
    return conditions


def dataset_conditions(filters: ListFilters) -> list[ColumnElement[bool]]:
    return _named(Dataset.name, filters)


CONDITIONS = {
    Job: job_conditions,
    Sweep: sweep_conditions,
    Evaluation: evaluation_conditions,
    Dataset: dataset_conditions,
}


def list_page(
    session: Session,
    table: type[Table],
    filters: ListFilters,
    *,
    limit: int,
    offset: int,
    query: Select[Any] | None = None,
) -> Page[Table]:
    """One page of `table`'s rows matching `filters`, newest first (ties broken by id so pages
    never overlap), and how many match in all. `query`: the select to start from (its loading
    options)."""
    conditions = CONDITIONS[table](filters)
    where = and_(*conditions) if conditions else None
    base = query if query is not None else select(table)
    created_at, row_id = table.created_at, table.id  # type: ignore[attr-defined]
    if where is not None:
        base = base.where(where)
    rows = session.scalars(
        base.order_by(created_at.desc(), row_id.desc()).limit(limit).offset(offset)
    ).all()
    counting = select(func.count()).select_from(table)
    if where is not None:
        counting = counting.where(where)
    total = session.scalar(counting) or 0
    return Page(data=list(rows), total=total, offset=offset)
