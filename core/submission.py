"""Accept a job: check the spec against the stored datasets and the foundation registry."""

import logging

from sqlalchemy.orm import Session

from core.catalog import referenced_dataset
from core.errors import InvalidSpecError
from core.foundations import FoundationRegistry
from core.jobs import create_job
from core.models import Job
from core.spec import JobSpec, replay_of, uses_pseudolabels
from core.strategies import effective_settings, spec_warnings

logger = logging.getLogger(__name__)


def submit_job(
    session: Session,
    spec: JobSpec,
    registry: FoundationRegistry,
    *,
    sweep_id: str | None = None,
    commit: bool = True,
) -> Job:
    """Create the job row (state queued) and commit it; the caller enqueues it afterwards."""
    train = referenced_dataset(session, spec.train_dataset, "train_dataset")
    labels = set(train.summary["labels"])
    if not {"energy", "forces"} <= labels:
        raise InvalidSpecError(
            f"train_dataset {train.id} needs energy and forces labels; it has "
            f"{', '.join(sorted(labels)) or 'none'}"
        )
    train_elements = set(train.summary["elements"])
    for role in ("valid_dataset", "test_dataset"):
        dataset_id = getattr(spec, role)
        if dataset_id is None:
            continue
        other = referenced_dataset(session, dataset_id, role)
        extra = set(other.summary["elements"]) - train_elements
        if extra:
            raise InvalidSpecError(
                f"{role} {dataset_id} contains element(s) {', '.join(sorted(extra))} that the "
                "training data lack, so the model cannot predict them"
            )
    isolated = set(train.summary.get("isolated_atom_elements", []))
    if spec.isolated_atoms_dataset is not None:
        extra = referenced_dataset(session, spec.isolated_atoms_dataset, "isolated_atoms_dataset")
        isolated |= set(extra.summary.get("isolated_atom_elements", []))
    if spec.e0s == "isolated_atoms" and not train_elements <= isolated:
        missing = ", ".join(sorted(train_elements - isolated))
        raise InvalidSpecError(
            f"e0s='isolated_atoms' needs a single-atom configuration with an energy for {missing} "
            "in the training data or in isolated_atoms_dataset"
        )
    for role in ("replay_dataset", "reference_dataset"):
        dataset_id = getattr(spec.evaluation, role)
        if dataset_id is not None:
            referenced_dataset(session, dataset_id, f"evaluation.{role}")
    registry.ensure_not_building(spec.foundation_model)
    if not registry.exists(spec.foundation_model):
        raise InvalidSpecError(
            f"unknown foundation model {spec.foundation_model!r}; GET /foundation-models lists them"
        )
    replay = replay_of(spec.strategy)
    replay_elements: set[str] = set()
    # An automatic replay set is built from the training data's elements when the job starts.
    if replay is not None and not replay.auto:
        replay_elements = _check_replay(session, replay.dataset, uses_pseudolabels(spec.strategy))
    if spec.strategy.name != "scratch":
        _check_foundation_elements(registry, spec.foundation_model, train_elements, replay_elements)
    _check_rss_compositions(spec, train_elements)
    job = create_job(
        session,
        spec.model_dump(mode="json"),
        train.id,
        warnings=spec_warnings(spec),
        effective_hyperparameters=effective_settings(spec),
        replay_dataset_id=replay.dataset if replay is not None and not replay.auto else None,
        sweep_id=sweep_id,
    )
    if commit:
        session.commit()
    logger.info("job=%s queued strategy=%s dataset=%s", job.id, spec.strategy.name, train.id)
    return job


def _check_replay(session: Session, dataset_id: str, pseudolabel: bool) -> set[str]:
    replay = referenced_dataset(session, dataset_id, "replay dataset")
    if not pseudolabel and not {"energy", "forces"} <= set(replay.summary["labels"]):
        raise InvalidSpecError(
            f"replay dataset {dataset_id} has no energy and forces labels; unlabelled replay "
            "data can only be used by pseudolabel_replay (or replay_lora with pseudolabel true)"
        )
    return set(replay.summary["elements"])


def _check_foundation_elements(
    registry: FoundationRegistry, name: str, train: set[str], replay: set[str]
) -> None:
    known = registry.local_elements(name)
    if known is None:
        return  # a published model not fetched yet: the worker checks once it has it
    for role, elements in (("training data", train), ("replay data", replay)):
        missing = sorted(elements - set(known))
        if missing:
            raise InvalidSpecError(
                f"foundation model {name} does not know element(s) {', '.join(missing)} of the "
                f"{role}; choose a foundation that covers them or the scratch strategy"
            )


def _check_rss_compositions(spec: JobSpec, train_elements: set[str]) -> None:
    """The fine-tuned model knows the training data's elements; explicit random-structure-search
    compositions must keep to them."""
    rss = spec.evaluation.rss_holes
    if rss is None or not rss.compositions:
        return
    from ase.formula import Formula

    wanted = {symbol for text in rss.compositions for symbol in Formula(text).count()}
    missing = sorted(wanted - train_elements)
    if missing:
        raise InvalidSpecError(
            f"evaluation.rss_holes.compositions name element(s) {', '.join(missing)} that the "
            "training data lack; the fine-tuned model cannot be judged on them"
        )
