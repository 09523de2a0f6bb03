"""Accept a job: check the spec against the stored datasets and the foundation registry."""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ase.data import atomic_numbers
from sqlalchemy.orm import Session

from core.config import Settings
from core.data.catalog import referenced_dataset
from core.errors import InvalidSpecError
from core.registry.foundations import FoundationRegistry, choose_head
from core.science.e0s import data_e0_method
from core.science.spec import JobSpec, needs_foundation, replay_of, uses_pseudolabels
from core.science.strategies import effective_settings, spec_warnings
from core.service.jobs import create_job
from core.service.models import Dataset, Job

if TYPE_CHECKING:
    from core.workflows.context import JobContext

logger = logging.getLogger(__name__)


# A check that needs the data or the foundation (core.workflows.admission.screen_reference), run on
# the spec and its training dataset once everything cheaper has passed.
Screen = Callable[[JobSpec, Dataset], None]


def submit_job(
    session: Session,
    spec: JobSpec,
    registry: FoundationRegistry,
    *,
    sweep_id: str | None = None,
    commit: bool = True,
    screen: Screen | None = None,
) -> Job:
    """Create the job row (state queued) and commit it; the caller enqueues it afterwards."""
    train = referenced_dataset(session, spec.train_dataset, "train_dataset")
    _check_trainable("train_dataset", train.id, train.summary)
    train_elements = set(train.summary["elements"])
    learned = learned_elements(train.summary)
    if spec.valid_dataset is not None:
        valid = referenced_dataset(session, spec.valid_dataset, "valid_dataset")
        # mace validates on energies and forces, as it trains.
        _check_trainable("valid_dataset", valid.id, valid.summary)
        extra = set(valid.summary["elements"]) - learned
        if extra:
            # Issue 26: mace needs an E0 for every element it validates on, and only the
            # training structures give one; an element there only as an isolated atom failed
            # deep in mace with a KeyError.
            raise InvalidSpecError(
                f"valid_dataset {valid.id} contains element(s) {', '.join(sorted(extra))} that "
                "the training data lack (other than as isolated atoms): mace validates on the "
                "elements it trains; add training configurations with them, or leave them out "
                "of valid_dataset",
                param="valid_dataset",
            )
    isolated = set(train.summary.get("isolated_atom_elements", []))
    if spec.isolated_atoms_dataset is not None:
        atoms_set = referenced_dataset(
            session, spec.isolated_atoms_dataset, "isolated_atoms_dataset"
        )
        isolated |= set(atoms_set.summary.get("isolated_atom_elements", []))
    chosen_by_service = spec.e0s_left_to_the_data()
    if chosen_by_service:
        # Issue 25: scratch without an E0 choice uses the data's isolated atoms when they cover
        # every element (as mace does), the fit on the data otherwise; the stored spec says which.
        spec = spec.model_copy(update={"e0s": data_e0_method(train_elements, isolated)})
    if spec.e0s == "isolated_atoms" and not train_elements <= isolated:
        missing = ", ".join(sorted(train_elements - isolated))
        raise InvalidSpecError(
            f"e0s='isolated_atoms' needs a single-atom configuration with an energy for {missing} "
            "in the training data or in isolated_atoms_dataset",
            param="e0s",
        )
    _check_explicit_e0s(spec, train_elements)
    evaluated = {
        "test_dataset": spec.test_dataset,
        "evaluation.reference_dataset": spec.evaluation.reference_dataset,
    }
    if needs_foundation(spec.strategy):
        # Scratch has no foundation, so nothing to forget: its forgetting is recorded as not
        # measured (core.evaluation.suite), and a sweep's forgetting set with more elements than
        # the training data must not refuse its scratch member (issue 25).
        evaluated["evaluation.replay_dataset"] = spec.evaluation.replay_dataset
    evaluated_elements = {
        role: set(referenced_dataset(session, dataset_id, role).summary["elements"])
        for role, dataset_id in evaluated.items()
        if dataset_id is not None
    }
    registry.require_known(spec.foundation_model)
    if needs_foundation(spec.strategy):
        registry.require_fetchable(spec.fine_tuned_foundation())
    replay = replay_of(spec.strategy)
    replay_elements: set[str] = set()
    # An automatic replay set is built from the training data's elements when the job starts.
    if replay is not None and not replay.auto:
        replay_elements = _check_replay(session, replay.dataset, uses_pseudolabels(spec.strategy))
    if needs_foundation(spec.strategy) and spec.foundation_model is not None:
        _check_foundation_elements(registry, spec.foundation_model, train_elements, replay_elements)
    _check_foundation_head(registry, spec)
    known = model_elements(spec, registry, train_elements | replay_elements)
    if known is not None:
        check_evaluated_elements(spec, known, evaluated_elements, train_elements)
    _check_rss_compositions(spec, known or train_elements)
    if screen is not None:
        screen(spec, train)
    job = create_job(
        session,
        spec.model_dump(mode="json"),
        train.id,
        warnings=spec_warnings(spec) + ([_service_e0_note(spec)] if chosen_by_service else []),
        effective_hyperparameters=effective_settings(spec, stress=_has_stress(train.summary)),
        replay_dataset_id=replay.dataset if replay is not None and not replay.auto else None,
        sweep_id=sweep_id,
    )
    if commit:
        session.commit()
    logger.info("job=%s queued strategy=%s dataset=%s", job.id, spec.strategy.name, train.id)
    return job


def _service_e0_note(spec: JobSpec) -> str:
    if spec.e0s == "isolated_atoms":
        return "E0s: the data's isolated atoms, which cover every element (no e0s was given)"
    return (
        "E0s: fitted on the data (average): no e0s was given and the data lack an isolated atom "
        "of every element; for E0s with physical meaning add isolated atoms at the data's level "
        "of theory"
    )


def model_elements(
    spec: JobSpec, registry: FoundationRegistry, training: set[str]
) -> set[str] | None:
    """The elements the delivered model will know: the training (and replay) data's, or every
    element of the foundation (spec.elements, issue 25); None while the foundation is not
    fetched yet (the evaluation then records what it cannot measure)."""
    if not needs_foundation(spec.strategy) or spec.elements == "training":
        return training
    known = registry.local_elements(spec.fine_tuned_foundation())
    return None if known is None else set(known)


def check_evaluated_elements(
    spec: JobSpec, known: set[str], evaluated: dict[str, set[str]], train: set[str]
) -> None:
    """Refuse a test, replay or reference set with elements the delivered model will not know
    (issue 25): its section could not be measured, which is knowable now."""
    for role, elements in evaluated.items():
        missing = _by_number(elements - known)
        if not missing:
            continue
        if not needs_foundation(spec.strategy):
            fix = "a scratch model knows only its training data's elements: add them to it"
        elif spec.elements == "training":
            fix = (
                "elements='training' keeps only the training data's elements: use "
                "elements='foundation' (the default) to keep the foundation's"
            )
        else:
            fix = f"the foundation {spec.foundation_model} does not know them either"
        raise InvalidSpecError(
            f"{role} holds element(s) {', '.join(missing)} that the delivered model will not "
            f"know ({fix}), or choose a dataset of {', '.join(_by_number(known))} only; "
            f"training data: {', '.join(_by_number(train))}"
        )


def _by_number(symbols: set[str]) -> list[str]:
    return sorted(symbols, key=atomic_numbers.__getitem__)


def learned_elements(summary: dict) -> set[str]:
    """Elements of a dataset's structures other than isolated atoms (datasets uploaded before
    the summary recorded them: all their elements)."""
    return set(summary.get("structure_elements") or summary["elements"])


def _has_stress(summary: dict) -> bool:
    """Periodic configurations with stress or virials; the job's record says what it trained."""
    return bool({"stress", "virials"} & set(summary["labels"])) and summary["n_periodic"] > 0


def _check_trainable(role: str, dataset_id: str, summary: dict) -> None:
    labels = set(summary["labels"])
    if {"energy", "forces"} <= labels:
        return
    if labels == {"energy"}:
        raise InvalidSpecError(
            f"{role} {dataset_id} has energies but no forces (an energy-only set): "
            "training and validation need forces; use this dataset as test_dataset or evaluate "
            "a model on it (POST /evaluations)",
            param=role,
        )
    raise InvalidSpecError(
        f"{role} {dataset_id} needs energy and forces labels; it has "
        f"{', '.join(sorted(labels)) or 'none'}; if the file holds them under other keys, "
        "upload it again naming them (energy_key, forces_key)",
        param=role,
    )


def _check_explicit_e0s(spec: JobSpec, train_elements: set[str]) -> None:
    if not isinstance(spec.e0s, dict):
        return
    missing = sorted(train_elements - set(spec.e0s))
    if missing:
        given = ", ".join(f"{symbol}: {value}" for symbol, value in spec.e0s.items())
        raise InvalidSpecError(
            f"explicit e0s lack {', '.join(missing)}, which the training data contain: give an "
            f"E0 (eV, at the data's level of theory) for every element, e.g. "
            f"{{{given}, {missing[0]}: <eV>}}, or use e0s='estimated'",
            param="e0s",
        )


def _check_replay(session: Session, dataset_id: str, pseudolabel: bool) -> set[str]:
    replay = referenced_dataset(
        session, dataset_id, "replay dataset", param="strategy.replay.dataset"
    )
    if not pseudolabel and not {"energy", "forces"} <= set(replay.summary["labels"]):
        raise InvalidSpecError(
            f"replay dataset {dataset_id} has no energy and forces labels; unlabelled replay "
            "data can only be used by pseudolabel_replay (or replay_lora with pseudolabel true)",
            param="strategy.replay.dataset",
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
                f"{role}; choose a foundation that covers them or the scratch strategy",
                param="foundation_model",
            )


def _check_foundation_head(registry: FoundationRegistry, spec: JobSpec) -> None:
    if spec.foundation_model is None:  # scratch without a foundation: no head to choose
        return
    info = registry.info(spec.foundation_model)
    if info is not None:  # a published model not fetched yet: the worker checks once it has it
        choose_head(spec.foundation_model, info.heads, spec.foundation_head)


def _check_rss_compositions(spec: JobSpec, known: set[str]) -> None:
    """Explicit random-structure-search compositions keep to the elements the delivered model
    knows."""
    rss = spec.evaluation.rss_holes
    if rss is None or not rss.compositions:
        return
    from ase.formula import Formula

    wanted = {symbol for text in rss.compositions for symbol in Formula(text).count()}
    missing = sorted(wanted - known)
    if missing:
        raise InvalidSpecError(
            f"evaluation.rss_holes.compositions name element(s) {', '.join(missing)} that the "
            "delivered model will not know; it cannot be judged on them",
            param="evaluation.rss_holes.compositions",
        )


def reference_screen(context: "JobContext", settings: Settings) -> Screen | None:
    """The E0 reference check of core.workflows.admission for the API's submissions, when
    enabled."""
    if settings.submission_check_max_atoms <= 0:
        return None
    from core.workflows.admission import screen_reference  # imports torch and mace: only when used

    loaded: dict = {}  # one load of each foundation per request, however many jobs

    def screen(spec: JobSpec, train: Dataset) -> None:
        screen_reference(context, spec, train, settings.submission_check_max_atoms, loaded)

    return screen
