"""Run one fine-tuning job on local files: E0s, mace-torch training, checks, test metrics.

Plain functions without database or queue, so tests call them directly; core.runner adds the job
row and the artifact store around them.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import ase
import numpy as np
import torch
from ase.data import chemical_symbols

from core import e0s as e0_methods
from core import model_checks
from core.cache import PredictionCache
from core.cost import actual_cost, replay_count
from core.datasets import (
    is_isolated_atom,
    labels_of,
    read_configurations,
    trained_stress_count,
    write_mace_extxyz,
)
from core.e0s import E0Fit
from core.errors import InvalidSpecError, PreflightBlockedError, TrainingFailedError
from core.evaluation.rss import FLAGGED_FILE_NAME as RSS_FLAGGED_FILE
from core.evaluation.rss import rss_holes_stage
from core.evaluation.suite import EvaluationData, evaluate_model
from core.exports import ExportResult, export_all
from core.foundation_heads import working_foundation
from core.foundations import FoundationModel, load_foundation, load_own_model, verified_copy
from core.inference import edge_budget, neighbourhood
from core.mace_process import run_mace_training
from core.memory import return_freed_memory
from core.preflight import PreflightOutcome, blocking_message, run_preflight
from core.pseudolabels import pseudolabelled
from core.replay import ReplayFile, prepare_replay_file
from core.spec import JobSpec, ScratchStrategy, lora_of, replay_of, uses_pseudolabels
from core.splits import Split, split_configurations
from core.strategies import (
    FREEZE_LEVELS,
    RUN_NAME,
    TrainingInputs,
    to_mace_argv,
    training_loss,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# science.md §2: an initial energy error above this means the E0s do not match the data.
E0_MISMATCH_MEV_PER_ATOM = 500.0
# Merged LoRA weights must reproduce the adapters' predictions to numerical precision.
LORA_MERGE_TOLERANCE_EV = 1e-6
LORA_CHECK_CONFIGS = 20


class Progress(Protocol):
    """What a job reports while it runs. Progress objects that keep a record (a job's row) may
    also define `preflight(report, cost)`, `e0s_chosen(e0s)`, `steps(stage, done, total)` and
    `trained(result)`; run_training calls those it finds."""

    def stage(self, name: str) -> None: ...

    def epoch(self, entry: dict) -> None: ...

    def should_stop(self) -> bool: ...


def _notify(progress: Progress, hook: str, *args: Any) -> None:
    # Optional hooks: benchmarks and tests pass progress objects that record only stages.
    method = getattr(progress, hook, None)
    if method is not None:
        method(*args)


@dataclass(frozen=True)
class JobFiles:
    train: Path
    valid: Path | None = None
    test: Path | None = None
    isolated_atoms: Path | None = None
    replay: Path | None = None
    # Evaluation only: pretraining-like data for the forgetting ratio, and RDF reference data.
    forgetting: Path | None = None
    reference: Path | None = None


@dataclass(frozen=True)
class TrainingResult:
    # Single head, LoRA merged: what a user downloads for an ASE calculator.
    model_path: Path
    e0_fit: E0Fit
    isolated_atom_energies: dict[str, float]
    # The report sections of core.evaluation.suite (accuracy, forgetting, md, rdf, dimers).
    evaluation: dict[str, Any]
    checks: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Replay strategies: the full model with its replay head, and how the replay set was made.
    multihead_model_path: Path | None = None
    replay: ReplayFile | None = None
    # Issue 9: the preflight report, which configuration went where, cost predicted vs actual,
    # and the export variants that passed or failed their check.
    preflight: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    exports: list[ExportResult] = field(default_factory=list)
    # {name, sha256, head} of the foundation fine-tuned; None for scratch.
    foundation: dict[str, str] | None = None
    # Further files the job delivers, by file name (the random-structure-search holes).
    artifacts: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class _Prepared:
    inputs: TrainingInputs
    replay: ReplayFile | None


def run_training(
    spec: JobSpec,
    files: JobFiles,
    foundation: FoundationModel | None,
    work_dir: Path,
    progress: Progress,
    *,
    device: str = "cpu",
    cache: PredictionCache | None = None,
) -> TrainingResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    progress.stage("preparing data")
    configs = read_configurations(files.train)
    # Isolated atoms are E0 references, set aside from the split (and named in it); a one-atom
    # periodic cell is a crystal and trains like any other configuration.
    candidates = [index for index, atoms in enumerate(configs) if not is_isolated_atom(atoms)]
    if not candidates:
        raise InvalidSpecError(
            "the training dataset holds only isolated atoms; nothing to train on"
        )
    fine_tuning = not isinstance(spec.strategy, ScratchStrategy)
    registered = foundation
    foundation_model = None
    head = None
    if foundation is not None:
        foundation, foundation_model, head = working_foundation(
            foundation, load_foundation(foundation, device), spec.foundation_head, work_dir
        )
        logger.info("foundation %s head=%s file=%s", foundation.name, head, foundation.path)
    if fine_tuning and (foundation is None or foundation_model is None):
        raise InvalidSpecError(f"strategy {spec.strategy.name} needs a foundation model")

    spec, batch_note = batch_size_for_edges(
        spec, [configs[i] for i in candidates], foundation_model, edge_budget()
    )
    progress.stage("preflight")
    # Scratch needs no foundation: its E0s, findings and warnings never evaluate one (the
    # foundation, when named, only serves as the comparison in the evaluation).
    own_model = foundation_model if fine_tuning else None
    outcome = preflight_job(
        spec, configs, files, foundation if fine_tuning else None, own_model, cache, device
    )
    _notify(
        progress,
        "preflight",
        outcome.report.to_dict(),
        outcome.cost.to_dict() if outcome.cost else None,
    )
    if outcome.report.blocking:
        raise PreflightBlockedError(blocking_message(outcome.report), outcome.report.to_dict())
    if fine_tuning:
        assert foundation_model is not None
        require_elements_known(foundation_model, configs, "training data")
    # Positions among the candidates (the training molecules); mapped back to the dataset below.
    chosen = _fraction(list(range(len(candidates))), spec.train_fraction, spec.hyperparameters.seed)
    split = split_configurations(
        [configs[candidates[i]] for i in chosen],
        valid_fraction=spec.valid_fraction if files.valid is None else 0.0,
        test_fraction=spec.split.test_fraction,
        group_by=spec.split.group_by,
        deduplicate=spec.split.deduplicate,
        seed=spec.hyperparameters.seed,
    )

    def picked(indices: list[int]) -> list[ase.Atoms]:
        return [configs[candidates[chosen[i]]] for i in indices]

    molecules = picked(split.train)
    # E0s are fitted on everything but the test set, as mace's own estimate would see it.
    fitted = sorted(split.train + split.valid)
    progress.stage("e0s")
    predicted = None
    if outcome.predictions is not None and spec.e0s == "estimated":
        predicted = outcome.predictions.energies[[chosen[i] for i in fitted]]
    fit = choose_e0s(
        spec, own_model, picked(fitted), _isolated_atoms(configs, files), predicted=predicted
    )
    logger.info("e0s chosen method=%s e0s=%s", fit.method, fit.e0s)
    # Shown on the job from now on: the model learns against them, and a failed job keeps them.
    _notify(progress, "e0s_chosen", fit.to_dict())
    warnings = e0_warnings(fit, spec) + preflight_warnings(outcome) + batch_note

    valid = picked(split.valid) if files.valid is None else None
    prepared = _prepare_inputs(
        spec, files, foundation, foundation_model, fit, molecules, valid, work_dir, device, cache
    )
    loss = loss_record(spec, molecules)
    inputs = replace(prepared.inputs, stress=loss["configs_with_stress"] > 0)
    # mace trains in a child process; the worker, idle beside it, keeps only what it holds.
    return_freed_memory()
    progress.stage("training")
    epochs: set[int] = set()

    def on_epoch(entry: dict) -> None:
        if entry.get("epoch") is not None and entry.get("head") != "replay":
            epochs.add(entry["epoch"])
        progress.epoch(entry)

    started = time.perf_counter()
    run_mace_training(
        to_mace_argv(spec, inputs),
        results_file=work_dir / "results" / f"{RUN_NAME}_run-{spec.hyperparameters.seed}_train.txt",
        log_file=work_dir / "mace.log",
        on_epoch=on_epoch,
        should_stop=progress.should_stop,
    )
    cost = {
        "predicted": outcome.cost.to_dict() if outcome.cost else None,
        "actual": actual_cost(time.perf_counter() - started, len(epochs)),
    }

    progress.stage("verifying")
    full_path = work_dir / "model" / f"{RUN_NAME}.model"
    full = load_own_model(full_path, device)
    delivered = model_checks.target_head(full)
    delivered_path = full_path
    if delivered is not full:
        delivered_path = work_dir / "model" / f"{RUN_NAME}_target_head.model"
        torch.save(delivered, delivered_path)
    checks = _strategy_checks(spec, full, foundation_model, molecules, work_dir)
    checks["loss"] = loss
    # science.md §5: mace can silently swap E0s; the delivered model must carry the chosen ones.
    verified = e0_methods.verify_model_e0s(delivered, fit.e0s)
    isolated_energies = verified.isolated_atom_energies
    checks["e0s"] = {
        "verified": True,
        "isolated_atoms_checked": True,
        # A lone atom's energy is E0 + this (ScaleShiftMACE: scale · readouts + shift).
        "lone_atom_interaction_ev": verified.lone_atom_interaction_energies,
    }

    held_out = picked(split.test) if split.test else _read(files.test)
    progress.stage("exporting")
    exports = export_all(delivered_path, held_out or molecules, work_dir / "exports")
    trained = TrainingResult(
        model_path=delivered_path,
        e0_fit=fit,
        isolated_atom_energies=isolated_energies,
        evaluation={},
        checks=checks,
        warnings=warnings,
        multihead_model_path=full_path if delivered is not full else None,
        replay=prepared.replay,
        preflight=outcome.report.to_dict(),
        split=recorded_split(
            split,
            [candidates[i] for i in chosen],
            set_aside=set_aside_configurations(configs, candidates, chosen),
        ),
        cost=cost,
        exports=exports,
        foundation=(
            {"name": registered.name, "sha256": registered.sha256, "head": head}
            if fine_tuning and registered and head
            else None
        ),
    )
    # Issue 21: the verified model is delivered now; the evaluation below can take far longer
    # than the training (MD), and the model does not depend on it.
    _notify(progress, "trained", trained)
    return_freed_memory()
    evaluation = evaluate_model(
        delivered,
        EvaluationData(
            test=held_out, replay=_read(files.forgetting), reference=_read(files.reference)
        ),
        spec.evaluation,
        # Scratch has no foundation to forget: no forgetting ratio for it.
        foundation=foundation_model if fine_tuning else None,
        on_stage=progress.stage,
        on_steps=getattr(progress, "steps", None),
        device=device,
    )
    artifacts = {}
    if spec.evaluation.rss_holes is not None:
        artifacts[RSS_FLAGGED_FILE] = work_dir / RSS_FLAGGED_FILE
        evaluation["rss_holes"] = rss_holes_stage(
            spec.evaluation.rss_holes,
            configs,
            delivered_path,
            artifacts[RSS_FLAGGED_FILE],
            model_name="fine-tuned",
            foundation=foundation if fine_tuning else None,
            cache_folder=cache.folder / "rss" if cache is not None else None,
            device=device,
            on_stage=progress.stage,
        )
    return replace(
        trained,
        evaluation=evaluation,
        artifacts=artifacts,
        warnings=trained.warnings + accuracy_warnings(evaluation),
    )


def preflight_job(
    spec: JobSpec,
    configs: list[ase.Atoms],
    files: JobFiles,
    foundation: FoundationModel | None,
    foundation_model: torch.nn.Module | None,
    cache: PredictionCache | None,
    device: str,
) -> PreflightOutcome:
    """core.preflight on a job's files: the findings, and the foundation's energies that E0
    estimation reuses."""
    replay = replay_of(spec.strategy)
    n_replay = 0
    if replay is not None and files.replay is not None:
        n_replay = replay_count(spec, len(read_configurations(files.replay)))
    isolated = _read(files.isolated_atoms) or []
    return run_preflight(
        spec,
        configs,
        foundation_model,
        isolated_atoms=[atoms for atoms in isolated if is_isolated_atom(atoms)],
        foundation_sha256=foundation.sha256 if foundation else None,
        cache=cache,
        device=device,
        n_replay=n_replay,
    )


def loss_record(spec: JobSpec, molecules: list[ase.Atoms]) -> dict[str, Any]:
    """Which loss the job trains with and on how many configurations' stress: the job says it."""
    with_stress = trained_stress_count(molecules)
    loss = training_loss(spec, with_stress > 0)
    return {
        "loss": loss,
        "energy_weight": spec.hyperparameters.energy_weight,
        "forces_weight": spec.hyperparameters.forces_weight,
        "stress_weight": spec.hyperparameters.stress_weight if loss == "stress" else None,
        "configs_with_stress": with_stress,
        "periodic_configs": sum(bool(atoms.pbc.any()) for atoms in molecules),
        "n_configs": len(molecules),
    }


# Per label: its RMSE, the RMS of its labels (the error of predicting zero), and their unit.
_ZERO_BASELINE_KEYS = {
    "forces": ("forces_rmse_mev_per_a", "forces_label_rms_mev_per_a", "meV/Å"),
    "stress": ("stress_rmse_mev_per_a3", "stress_label_rms_mev_per_a3", "meV/Å³"),
}


def accuracy_warnings(evaluation: dict[str, Any]) -> list[str]:
    """Labels on which the delivered model is worse than predicting zero (issue 18 item 3)."""
    warnings = []
    for name, metrics in (evaluation.get("accuracy") or {}).items():
        for label in metrics.get("worse_than_zero") or []:
            rmse_key, rms_key, unit = _ZERO_BASELINE_KEYS[label]
            rmse, rms = metrics[rmse_key], metrics[rms_key]
            warnings.append(
                f"{name} {label}: RMSE {rmse:.3g} {unit} is above the labels' own RMS "
                f"{rms:.3g} {unit}, worse than predicting zero; check the labels' units and "
                "sign, and train longer or with a larger stress_weight"
            )
    return warnings


# mace-torch's training step (forces in the loss, so a double backward pass) holds about 200 kB
# per edge at MACE-MP-0-small size in float64, against a few kB in a prediction: a default batch
# is kept to this share of MLFT_MAX_EDGES_PER_BATCH.
TRAINING_EDGE_SHARE = 0.5


def batch_size_for_edges(
    spec: JobSpec,
    molecules: list[ase.Atoms],
    model: torch.nn.Module | None,
    max_edges: int,
) -> tuple[JobSpec, list[str]]:
    """The spec with its batch size lowered so that a batch of its largest configurations stays
    within TRAINING_EDGE_SHARE of the edge budget, with a note saying so: the worker's memory is
    bounded by the setting, whatever the data (a single configuration is still trained on)."""
    hyper = spec.hyperparameters
    if not molecules:
        return spec, []
    if isinstance(spec.strategy, ScratchStrategy):
        r_max = spec.strategy.architecture.r_max
    elif model is not None:
        r_max = float(model.r_max)
    else:
        return spec, []
    largest = max(neighbourhood(atoms, r_max).n_edges + len(atoms) for atoms in molecules)
    fitting = max(1, int(TRAINING_EDGE_SHARE * max_edges) // largest)
    if fitting >= hyper.batch_size:
        return spec, []
    lowered = spec.model_copy(
        update={"hyperparameters": hyper.model_copy(update={"batch_size": fitting})}
    )
    note = (
        f"batch size {fitting} instead of {hyper.batch_size}: the largest training "
        f"configuration has {largest} edges within r_max {r_max:g} Å, and training memory grows "
        f"with edges; a batch holds at most {int(TRAINING_EDGE_SHARE * max_edges)} "
        f"(half of MLFT_MAX_EDGES_PER_BATCH={max_edges}, which a worker with more memory may "
        "raise)"
    )
    logger.info(note)
    return lowered, [note]


def preflight_warnings(outcome: PreflightOutcome) -> list[str]:
    return [
        f"preflight [{finding.code}]: {finding.message}"
        for finding in outcome.report.findings
        if finding.severity == "warning"
    ]


def recorded_split(
    split: Split, dataset_indices: list[int], set_aside: dict[str, list[int]] | None = None
) -> dict[str, Any]:
    """The split in positions of the training dataset's configurations (0-based), with every
    configuration left out of it named under `set_aside` and counted."""
    record = split.to_dict()
    for side in ("train", "valid", "test", "duplicates_removed"):
        record[side] = [dataset_indices[i] for i in record[side]]
    record["set_aside"] = set_aside or {}
    for reason, indices in record["set_aside"].items():
        record["counts"][reason] = len(indices)
    return record


def set_aside_configurations(
    configs: list[ase.Atoms], candidates: list[int], chosen: list[int]
) -> dict[str, list[int]]:
    """Dataset positions kept out of the split, by reason: isolated atoms (E0 references, not
    trained on) and configurations train_fraction did not sample."""
    picked = {candidates[i] for i in chosen}
    return {
        "isolated_atoms": [i for i, atoms in enumerate(configs) if is_isolated_atom(atoms)],
        "not_sampled": [i for i in candidates if i not in picked],
    }


def _prepare_inputs(
    spec: JobSpec,
    files: JobFiles,
    foundation: FoundationModel | None,
    foundation_model: torch.nn.Module | None,
    fit: E0Fit,
    molecules: list[ase.Atoms],
    valid: list[ase.Atoms] | None,
    work_dir: Path,
    device: str,
    cache: PredictionCache | None,
) -> _Prepared:
    train_file = work_dir / "train.extxyz"
    write_mace_extxyz(molecules, train_file)
    valid_file = None
    if valid or files.valid is not None:
        valid_file = work_dir / "valid.extxyz"
        write_mace_extxyz(valid or read_configurations(files.valid), valid_file)
    if isinstance(spec.strategy, ScratchStrategy):
        inputs = TrainingInputs(work_dir, train_file, valid_file, None, fit.e0s, device)
        return _Prepared(inputs, None)
    assert foundation is not None and foundation_model is not None
    replay = replay_of(spec.strategy)
    if replay is None:
        copy_file = work_dir / "foundation_with_e0s.model"
        torch.save(e0_methods.with_e0s(foundation_model, fit.e0s), copy_file)
        inputs = TrainingInputs(work_dir, train_file, valid_file, copy_file, fit.e0s, device)
        return _Prepared(inputs, None)
    if files.replay is None:
        raise InvalidSpecError("a replay strategy needs its replay dataset")
    require_elements_known(foundation_model, read_configurations(files.replay), "replay data")
    replay_file = prepare_replay_file(
        replay,
        files.replay,
        work_dir / "replay.extxyz",
        pseudolabels=_pseudolabeller(spec, foundation, foundation_model, cache, device),
        foundation=foundation,
        seed=spec.hyperparameters.seed,
    )
    # The replay head takes its E0s from the foundation itself; the target head from --E0s,
    # which mace needs for exactly the elements of target and replay data together.
    own = {chemical_symbols[z]: e0 for z, e0 in e0_methods.model_e0s(foundation_model).items()}
    e0s = {symbol: own[symbol] for symbol in replay_file.elements} | fit.e0s
    # mace reads the foundation itself for multihead fine-tuning: it gets the pinned bytes,
    # copied into the job's folder, never the models folder's file.
    foundation_file = verified_copy(foundation, work_dir / "foundation.model")
    inputs = TrainingInputs(
        work_dir, train_file, valid_file, foundation_file, e0s, device, replay_file.path
    )
    return _Prepared(inputs, replay_file)


def _pseudolabeller(
    spec: JobSpec,
    foundation: FoundationModel,
    foundation_model: torch.nn.Module,
    cache: PredictionCache | None,
    device: str,
) -> Callable[[list[ase.Atoms]], list[ase.Atoms]] | None:
    if not uses_pseudolabels(spec.strategy):
        return None

    def label(configs: list[ase.Atoms]) -> list[ase.Atoms]:
        # Computed once per foundation and structures, shared by every job (and sweep) replaying
        # them; mace's own --pseudolabel_replay would relabel them in each job.
        return pseudolabelled(
            configs, foundation_model, foundation.sha256, cache=cache, device=device
        )

    return label


def _strategy_checks(
    spec: JobSpec,
    full: torch.nn.Module,
    foundation_model: torch.nn.Module | None,
    molecules: list[ase.Atoms],
    work_dir: Path,
) -> dict[str, Any]:
    checks: dict[str, Any] = {"trainable_parameters": model_checks.trainable_parameters(spec, full)}
    level = FREEZE_LEVELS.get(type(spec.strategy))
    if level is not None:
        assert foundation_model is not None
        changed = model_checks.changed_frozen_parameters(full, foundation_model, level)
        if changed:
            raise TrainingFailedError(
                f"--freeze={level} left parameters that should be frozen changed: "
                f"{', '.join(changed[:5])}"
            )
        frozen = [
            name
            for name, _ in full.named_parameters()
            if name.startswith(model_checks.FROZEN_PREFIXES[level])
        ]
        checks["frozen_parameters"] = {"level": level, "count": len(frozen), "unchanged": True}
    lora = lora_of(spec.strategy)
    if lora is not None:
        unmerged = model_checks.unmerged_lora_model(
            full, model_checks.newest_checkpoint(work_dir / "checkpoints"), *lora
        )
        difference = model_checks.max_energy_difference(
            full, unmerged, molecules[:LORA_CHECK_CONFIGS]
        )
        if difference > LORA_MERGE_TOLERANCE_EV:
            raise TrainingFailedError(
                f"the merged LoRA model differs from the adapters by {difference:.3g} eV"
            )
        checks["lora_merge_max_energy_difference_ev"] = difference
    return checks


def e0_warnings(fit: E0Fit, spec: JobSpec) -> list[str]:
    notes = [f"E0s: {fit.note}"] if fit.note else []
    return notes + _e0_mismatch_warnings(fit, spec)


def _e0_mismatch_warnings(fit: E0Fit, spec: JobSpec) -> list[str]:
    before = fit.energy_rmse_before
    if before is None or before <= E0_MISMATCH_MEV_PER_ATOM:
        return []
    after = fit.energy_rmse_after
    if spec.e0s == "foundation":
        return [
            f"E0 mismatch: the foundation's energy error on the training data is {before:.0f} "
            "meV/atom with its own E0s (above 500 meV/atom); the data likely come from another "
            "level of theory: use e0s='estimated' or isolated atoms"
        ]
    if after is not None and after <= E0_MISMATCH_MEV_PER_ATOM:
        return [
            f"E0 mismatch corrected: the foundation's energy error on the training data was "
            f"{before:.0f} meV/atom with its own E0s and is {after:.1f} meV/atom with the "
            f"chosen E0s ({fit.method})"
        ]
    still = "cannot be told" if after is None else f"is still {after:.0f} meV/atom"
    return [
        f"E0 mismatch not corrected: the foundation's energy error on the training data was "
        f"{before:.0f} meV/atom with its own E0s and {still} with the chosen E0s ({fit.method}), "
        f"above {E0_MISMATCH_MEV_PER_ATOM:.0f} meV/atom: use e0s='estimated' or isolated atoms "
        "at the data's level of theory"
    ]


def require_elements_known(model: torch.nn.Module, configs: list[ase.Atoms], role: str) -> None:
    known = {int(z) for z in model.atomic_numbers}
    numbers = {int(z) for atoms in configs for z in atoms.numbers}
    missing = [chemical_symbols[z] for z in sorted(numbers - known)]
    if missing:
        raise InvalidSpecError(
            f"the foundation model does not know element(s) {', '.join(missing)} of the "
            f"{role}; fine-tune a foundation that covers them or train from scratch"
        )


def _fraction(configs: list[T], fraction: float, seed: int) -> list[T]:
    if fraction >= 1.0:
        return configs
    count = max(2, round(fraction * len(configs)))
    picked = np.random.default_rng(seed).choice(len(configs), min(count, len(configs)), False)
    return [configs[index] for index in sorted(picked)]


def _read(path: Path | None) -> list[ase.Atoms] | None:
    return read_configurations(path) if path is not None else None


def _isolated_atoms(configs: list[ase.Atoms], files: JobFiles) -> list[ase.Atoms]:
    singles = [atoms for atoms in configs if is_isolated_atom(atoms)]
    if files.isolated_atoms is not None:
        singles += [
            atoms for atoms in read_configurations(files.isolated_atoms) if is_isolated_atom(atoms)
        ]
    return singles


def _energies(configs: list[ase.Atoms]) -> np.ndarray:
    return np.array([labels_of(atoms).energy for atoms in configs], dtype=float)


def choose_e0s(
    spec: JobSpec,
    foundation_model: torch.nn.Module | None,
    configs: list[ase.Atoms],
    isolated_atoms: list[ase.Atoms],
    *,
    predicted: np.ndarray | None = None,
) -> E0Fit:
    energies = _energies(configs)
    elements = sorted({symbol for atoms in configs for symbol in atoms.get_chemical_symbols()})
    method = spec.e0s
    if isinstance(method, dict):
        return e0_methods.explicit_e0s(
            method, elements, model=foundation_model, configs=configs, energies=energies
        )
    if method == "isolated_atoms":
        fit = e0_methods.isolated_atom_e0s(
            isolated_atoms,
            _energies(isolated_atoms),
            model=foundation_model,
            training=configs,
            training_energies=energies,
        )
        missing = sorted(set(elements) - set(fit.e0s))
        if missing:
            raise InvalidSpecError(
                f"e0s='isolated_atoms' needs a single-atom configuration of {', '.join(missing)} "
                "in the training data or in isolated_atoms_dataset"
            )
        # Isolated atoms of elements the data lack would give mace E0s for absent elements.
        return replace(fit, e0s={symbol: fit.e0s[symbol] for symbol in elements})
    if method == "average":
        return e0_methods.average_e0s(configs, energies, model=foundation_model)
    if foundation_model is None:
        raise InvalidSpecError(f"e0s={method!r} needs a foundation model")
    if method == "foundation":
        return e0_methods.foundation_e0s(
            foundation_model, elements, configs=configs, energies=energies
        )
    return e0_methods.estimate_e0s(foundation_model, configs, energies, predicted=predicted)
