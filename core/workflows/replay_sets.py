"""Replay sets built for the user: requested, cached by content hash, built by a worker into a
regular dataset that any replay strategy can name (science.md §1: diversity matters, not where
the labels came from)."""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ase.io
import torch
from ase.data import atomic_numbers
from pydantic import ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.data.catalog import get_dataset, referenced_dataset, register_dataset
from core.data.datasets import read_configurations
from core.errors import InvalidSpecError, NotFoundError
from core.registry.foundation_heads import working_foundation
from core.registry.foundations import (
    DEMO_FOUNDATION_NAME,
    FoundationModel,
    FoundationName,
    load_foundation,
)
from core.science.replay_build import (
    RANDOM_CRYSTAL_SOURCE,
    BuiltReplaySet,
    ReplayBuildInputs,
    available_sources,
    build_replay_set,
)
from core.science.spec import SEED_MAX, JobSpec, ObjectId, SpecModel, replay_of
from core.service.db import session_scope
from core.service.jobs import TERMINAL_STATES, get_job, record_stage
from core.service.models import Dataset, JobState, ReplaySet
from core.service.scoping import scope_session
from core.service.stages import Stage, WorkStopped, run_stages
from core.workflows.context import JobContext
from core.workflows.work import Work, execute
from core.workflows.work import work_folder as work_folder_of

logger = logging.getLogger(__name__)

# Part of the content hash: a change to how candidates are generated or chosen is a new set.
BUILDER_VERSION = 1
DEFAULT_SIZE = 300
MAX_SIZE = 50_000
# How long a job waits for a replay set another worker is building with the same inputs.
WAIT_FOR_OTHER_BUILD_S = 3600.0

SourceName = Literal[
    "rattle", "strain", "supercell", "vacancy", "surface", "dimer", "random_crystal"
]


class ReplaySetSpec(SpecModel):
    """What to build a replay set from. Elements come from `elements` or the training dataset."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    foundation_model: FoundationName = DEMO_FOUNDATION_NAME
    # Multi-head foundations: the head that labels the set; None takes the model's default.
    foundation_head: str | None = Field(default=None, min_length=1, max_length=100)
    elements: list[str] | None = Field(default=None, min_length=1, max_length=118)
    # The user's training data: its elements, and the configurations the generators perturb.
    train_dataset: ObjectId | None = None
    size: int = Field(default=DEFAULT_SIZE, ge=1, le=MAX_SIZE)
    # None: every generated source available here.
    sources: list[SourceName] | None = None
    # Uploaded datasets whose configurations join the candidates (pretraining-like data).
    pool_datasets: list[ObjectId] = Field(default_factory=list, max_length=100)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)

    @field_validator("elements")
    @classmethod
    def _real_elements(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        # ASE counts "X" (a dummy atom) among its symbols; no foundation knows it.
        unknown = sorted(
            {symbol for symbol in value if symbol not in atomic_numbers or symbol == "X"}
        )
        if unknown:
            raise ValueError(f"not chemical elements: {', '.join(unknown)}")
        return sorted(set(value), key=atomic_numbers.__getitem__)

    @field_validator("sources")
    @classmethod
    def _each_source_once(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted(set(value))

    @model_validator(mode="after")
    def _has_elements_and_sources(self) -> "ReplaySetSpec":
        if self.elements is None and self.train_dataset is None:
            raise ValueError("give the elements, or a train_dataset to take them from")
        if self.sources == [] and not self.pool_datasets:
            raise ValueError("no sources and no pool_datasets: nothing to build from")
        return self


@dataclass(frozen=True)
class Submitted:
    replay_set: ReplaySet
    created: bool  # False: an existing set with the same inputs is reused


def submit_replay_set(session: Session, spec: ReplaySetSpec, context: JobContext) -> Submitted:
    """Check the request, reuse a set built (or being built) from the same inputs, or create a
    queued row; the caller enqueues a created one."""
    resolved, content_hash = resolve(session, spec, context)
    existing = find_reusable(session, content_hash)
    if existing is not None:
        logger.info("replay_set=%s reused for the same inputs", existing.id)
        return Submitted(existing, False)
    replay_set = ReplaySet(
        spec=resolved.model_dump(mode="json"), content_hash=content_hash, progress=None
    )
    session.add(replay_set)
    session.commit()
    logger.info("replay_set=%s queued size=%d", replay_set.id, resolved.size)
    return Submitted(replay_set, True)


def resolve(
    session: Session, spec: ReplaySetSpec, context: JobContext
) -> tuple[ReplaySetSpec, str]:
    """The spec with elements and sources filled in, and its content hash; InvalidSpecError for
    what cannot be built."""
    context.registry.ensure_not_building(spec.foundation_model)
    if not context.registry.exists(spec.foundation_model):
        raise InvalidSpecError(
            f"unknown foundation model {spec.foundation_model!r}; GET /foundation-models lists them"
        )
    train = None
    if spec.train_dataset is not None:
        train = referenced_dataset(session, spec.train_dataset, "train_dataset")
    if spec.elements is not None:  # never empty (min_length)
        elements = spec.elements
    else:
        assert train is not None  # the spec's validator: elements, or a train_dataset
        elements = sorted(train.summary["elements"], key=atomic_numbers.__getitem__)
    known = context.registry.local_elements(spec.foundation_model)
    if known is not None:
        missing = [symbol for symbol in elements if symbol not in known]
        if missing:
            raise InvalidSpecError(
                f"foundation model {spec.foundation_model} does not know element(s) "
                f"{', '.join(missing)}; it knows {', '.join(known)}"
            )
    pools = [
        referenced_dataset(session, dataset_id, "pool dataset") for dataset_id in spec.pool_datasets
    ]
    for pool in pools:
        if not set(pool.summary["elements"]) & set(elements):
            raise InvalidSpecError(
                f"pool dataset {pool.id} holds only {', '.join(pool.summary['elements'])}, "
                f"none of the replay set's elements {', '.join(elements)}"
            )
    sources = spec.sources if spec.sources is not None else list(available_sources())
    if RANDOM_CRYSTAL_SOURCE in sources and RANDOM_CRYSTAL_SOURCE not in available_sources():
        raise InvalidSpecError("random_crystal needs PyXtal random crystals, not installed here")
    if not sources:
        in_pools = sum(pool.summary["n_configs"] for pool in pools)
        if spec.size > in_pools:
            raise InvalidSpecError(
                f"size {spec.size} is larger than the {in_pools} configurations of the pool "
                "datasets, the only source; ask for fewer or add generated sources"
            )
    resolved = spec.model_copy(update={"elements": elements, "sources": sources})
    foundation_sha256 = _foundation_sha256(context, spec.foundation_model)
    return resolved, content_hash(resolved, foundation_sha256, train, pools)


def content_hash(
    spec: ReplaySetSpec, foundation_sha256: str | None, train: Dataset | None, pools: list[Dataset]
) -> str:
    key = {
        "version": BUILDER_VERSION,
        # A published foundation not fetched yet hashes by name; the worker hashes its file.
        "foundation": foundation_sha256 or f"name:{spec.foundation_model}",
        "elements": spec.elements,
        "sources": sorted(spec.sources or []),
        "size": spec.size,
        "seed": spec.seed,
        "configurations": train.sha256 if train is not None else None,
        "pools": sorted(pool.sha256 for pool in pools),
    }
    if spec.foundation_head is not None:  # keeps the hashes of sets built before heads existed
        key["foundation_head"] = spec.foundation_head
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _foundation_sha256(context: JobContext, name: str) -> str | None:
    if context.registry.local_elements(name) is None:
        return None
    return context.registry.resolve(name).sha256


def find_reusable(session: Session, content_hash: str) -> ReplaySet | None:
    """A set with these inputs that succeeded or is still on its way."""
    query = (
        select(ReplaySet)
        .where(
            ReplaySet.content_hash == content_hash,
            ReplaySet.state.in_([JobState.SUCCEEDED, JobState.RUNNING, JobState.QUEUED]),
        )
        .order_by(ReplaySet.created_at)
    )
    candidates = list(session.scalars(query))
    succeeded = [row for row in candidates if row.state is JobState.SUCCEEDED]
    preferred = succeeded or candidates
    return preferred[0] if preferred else None


def get_replay_set(session: Session, replay_set_id: str) -> ReplaySet:
    replay_set = session.get(ReplaySet, replay_set_id)
    if replay_set is None:
        raise NotFoundError(f"replay set {replay_set_id} does not exist")
    return replay_set


def list_replay_sets(session: Session, *, limit: int = 100, offset: int = 0) -> list[ReplaySet]:
    query = select(ReplaySet).order_by(ReplaySet.created_at.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def execute_replay_set(context: JobContext, replay_set_id: str) -> JobState:
    """Build a queued replay set (or rebuild one whose worker died); idempotent otherwise."""
    return execute(context, ReplaySet, replay_set_id, _build)


def work_folder(context: JobContext, replay_set_id: str) -> Path:
    return work_folder_of(context, ReplaySet, replay_set_id)


@dataclass
class _Build:
    """What the stages of a replay-set build share."""

    work: Work
    spec: ReplaySetSpec
    project_id: str
    # Set by the stage that computes each, read by the stages after it.
    inputs: ReplayBuildInputs = field(init=False)
    foundation: FoundationModel = field(init=False)
    model: torch.nn.Module = field(init=False)
    built: BuiltReplaySet = field(init=False)
    dataset_id: str = field(init=False)

    @property
    def context(self) -> JobContext:
        return self.work.context


def _build(work: Work) -> None:
    with session_scope(work.context.sessions) as session:
        replay_set = get_replay_set(session, work.row_id)
        spec = ReplaySetSpec.model_validate(replay_set.spec)
        project_id = replay_set.project_id
        # Two requests for the same inputs can both have been queued before either was built;
        # a set built from another project's data is never shared.
        twin = find_reusable(scope_session(session, project_id), replay_set.content_hash)
    if twin is not None and twin.state is JobState.SUCCEEDED:
        work.succeed(dataset_id=twin.dataset_id, report=twin.report)
        return
    build = _Build(work, spec, project_id)
    run_stages(BUILD_STAGES, build, record=work.stage, should_stop=work.stopped)
    work.succeed(dataset_id=build.dataset_id, report=_report(build))


def _read_inputs(build: _Build) -> None:
    context, spec = build.context, build.spec
    with session_scope(context.sessions) as session:

        def path_of(dataset_id: str) -> Path:
            return context.storage.local_path(get_dataset(session, dataset_id).storage_key)

        train = path_of(spec.train_dataset) if spec.train_dataset is not None else None
        pools = [path_of(dataset_id) for dataset_id in spec.pool_datasets]
    build.inputs = ReplayBuildInputs(
        elements=list(spec.elements or []),
        configurations=read_configurations(train) if train is not None else [],
        sources=list(spec.sources or []),
        size=spec.size,
        seed=spec.seed,
        pool=[atoms for path in pools for atoms in read_configurations(path)],
    )


def _load_foundation(build: _Build) -> None:
    context, spec = build.context, build.spec
    build.foundation = context.registry.resolve(spec.foundation_model)
    _, build.model, _ = working_foundation(
        build.foundation,
        load_foundation(build.foundation, context.device),
        spec.foundation_head,
        work_folder(context, build.work.row_id) / "foundation",
    )


def _generate_and_label(build: _Build) -> None:
    build.built = build_replay_set(
        build.model,
        build.inputs,
        device=build.context.device,
        on_progress=_ProgressRecorder(build.work),
    )


def _store(build: _Build) -> None:
    path = work_folder(build.context, build.work.row_id) / "replay.extxyz"
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, build.built.structures, format="extxyz")
    with session_scope(build.context.sessions) as session:
        dataset = register_dataset(
            scope_session(session, build.project_id),
            build.context.storage,
            path,
            f"replay-set-{build.work.row_id}.extxyz",
        )
    build.dataset_id = dataset.id


BUILD_STAGES: list[Stage[_Build]] = [
    Stage(None, _read_inputs),
    Stage(None, _load_foundation),
    # Records its own stages, with counts (_ProgressRecorder).
    Stage(None, _generate_and_label),
    Stage("storing", _store),
]


def _report(build: _Build) -> dict[str, Any]:
    spec = build.spec
    return {
        **build.built.report,
        "provenance": {
            "foundation_model": spec.foundation_model,
            "foundation_sha256": build.foundation.sha256,
            "elements": spec.elements,
            "sources": spec.sources,
            "pool_datasets": spec.pool_datasets,
            "train_dataset": spec.train_dataset,
            "seed": spec.seed,
            "builder_version": BUILDER_VERSION,
        },
    }


class _ProgressRecorder:
    """Stage and counts of a building set on its row, at most once a second per stage."""

    def __init__(self, work: Work) -> None:
        self.work = work
        self.last: tuple[str, float] = ("", 0.0)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.work.stopped():
            raise WorkStopped(stage)  # cancelled, or taken over after a lease expiry
        now = time.monotonic()
        if stage == self.last[0] and done < total and now - self.last[1] < 1.0:
            return
        self.last = (stage, now)
        self.work.stage(stage, {"done": done, "total": total})


def ensure_replay_set(context: JobContext, spec: ReplaySetSpec, project_id: str) -> ReplaySet:
    """A built replay set for these inputs in the project: reused when one exists, else built
    here and now (a job's `replay: auto` stage). Raises InvalidSpecError when it cannot be built."""
    deadline = time.monotonic() + WAIT_FOR_OTHER_BUILD_S
    while True:
        with session_scope(context.sessions) as session:
            submitted = submit_replay_set(scope_session(session, project_id), spec, context)
            replay_set = submitted.replay_set
        if replay_set.state not in TERMINAL_STATES:
            # Builds it when queued, or when the worker that was building it died; does nothing
            # while another live worker builds it.
            execute_replay_set(context, replay_set.id)
        with session_scope(context.sessions) as session:
            final = get_replay_set(session, replay_set.id)
        if final.state is JobState.SUCCEEDED:
            return final
        if final.state in TERMINAL_STATES:
            raise InvalidSpecError(f"replay set {final.id} could not be built: {final.error}")
        if time.monotonic() >= deadline:
            raise InvalidSpecError(f"replay set {final.id} is still {final.state.value}")
        time.sleep(2.0)  # another worker builds the same set; wait for it


def with_built_replay(context: JobContext, job_id: str, spec: JobSpec) -> JobSpec:
    """The job spec with `replay: auto` replaced by a replay set built (or reused) for its
    training data; other specs unchanged. The job's stored spec then names the set's dataset,
    so its reports and model card say which data were replayed, and a job redelivered after its
    worker died does not build again."""
    replay = replay_of(spec.strategy)
    if replay is None or not replay.auto:
        return spec
    with session_scope(context.sessions) as session:
        record_stage(session, job_id, "replay set")
        project_id = get_job(session, job_id).project_id
    replay_set = ensure_replay_set(
        context,
        ReplaySetSpec(
            foundation_model=spec.fine_tuned_foundation(),  # replay: not scratch
            foundation_head=spec.foundation_head,
            train_dataset=spec.train_dataset,
            size=replay.num_samples or DEFAULT_SIZE,
            seed=spec.hyperparameters.seed,
        ),
        project_id,
    )
    # The set already has the size asked for; its structures are all replayed.
    built = replay.model_copy(update={"dataset": replay_set.dataset_id, "num_samples": None})
    resolved = spec.model_copy(
        update={"strategy": spec.strategy.model_copy(update={"replay": built})}
    )
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id)
        job.spec = resolved.model_dump(mode="json")
        job.replay_dataset_id = replay_set.dataset_id
    logger.info("job=%s replay_set=%s dataset=%s", job_id, replay_set.id, replay_set.dataset_id)
    return resolved
