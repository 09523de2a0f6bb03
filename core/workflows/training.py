"""Run one fine-tuning job on local files: E0s, mace-torch training, checks, test metrics.

Plain functions without database or queue, so tests call them directly; core.workflows.runner adds
the job row and the artifact store around them.
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

from core.artifacts.storage_keys import MACE_LOG_NAME, RSS_FLAGGED_FILE
from core.data.datasets import read_configurations, trained_stress_count, write_mace_extxyz
from core.data.label_values import is_isolated_atom, labels_of
from core.data.splits import Split, split_configurations
from core.errors import InvalidSpecError, PreflightBlockedError, TrainingFailedError
from core.evaluation.md_plan import md_budget_s
from core.evaluation.rss import rss_holes_stage
from core.evaluation.suite import EvaluationData, evaluate_model
from core.evaluation.unmeasured import attempt
from core.registry import mace_model
from core.registry.foundation_heads import working_foundation
from core.registry.foundations import (
    FoundationModel,
    load_foundation,
    load_own_model,
    write_mace_foundation,
)
from core.reporting.report_models import EvaluationSections
from core.science import e0s as e0_methods
from core.science import model_checks
from core.science.batch_limits import batch_size_within_training_set
from core.science.cache import PredictionCache
from core.science.cost import actual_cost, replay_count
from core.science.cueq import CUEQ, Kernels, training_kernels
from core.science.e0s import E0_MISMATCH_MEV_PER_ATOM, E0Fit
from core.science.edge_budget import EdgeBudget
from core.science.exports import ExportResult, export_all
from core.science.inference import neighbourhood, use_edge_budget
from core.science.mace_process import RungPlan, run_mace_training
from core.science.preflight import PreflightOutcome, blocking_message, run_preflight
from core.science.pseudolabels import pseudolabelled
from core.science.replay import ReplayFile, prepare_replay_file
from core.science.spec import (
    JobSpec,
    ScratchStrategy,
    freeze_level_of,
    lora_of,
    replay_of,
    uses_pseudolabels,
)
from core.science.strategies import (
    RUN_NAME,
    TrainingInputs,
    to_mace_argv,
    training_loss,
)
from core.service.stages import Stage, run_stages
from core.workflows.device_budget import job_edge_budget
from core.workflows.gpu_share import train_sharing_the_device
from core.workflows.memory import return_freed_memory

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Merged LoRA weights must reproduce the adapters' predictions to numerical precision.
LORA_MERGE_TOLERANCE_EV = 1e-6
LORA_CHECK_CONFIGS = 20


class Progress(Protocol):
    """What a job reports while it runs. Progress objects that keep a record (a job's row) may
    also define `preflight(report, cost)`, `e0s_chosen(e0s)`, `steps(stage, done, total)` and
    `trained(result)`; run_training calls those it finds. A job of a sweep that stops losers
    early also has `rungs` (a RungPlan) and `job_id`."""

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
    # Issue 27: a sweep's successive halving stopped its training at a rung (not evaluated).
    stopped_early: bool = False


@dataclass(frozen=True)
class _Prepared:
    inputs: TrainingInputs
    replay: ReplayFile | None
    # The E0s with those the model keeps from its foundation (issue 25).
    fit: E0Fit


@dataclass
class _TrainingRun:
    """What the stages of run_training share: the job's inputs, then what each stage adds
    (a field is set by the stage that computes it and read by the stages after)."""

    spec: JobSpec
    files: JobFiles
    registered: FoundationModel | None  # as the registry names it; the model card cites it
    work_dir: Path
    progress: Progress
    device: str
    cache: PredictionCache | None
    # preparing data
    configs: list[ase.Atoms] = field(init=False)
    candidates: list[int] = field(init=False)
    fine_tuning: bool = field(init=False)
    # The working file of the foundation: the fine-tuned head alone, in the job's folder.
    foundation: FoundationModel | None = field(init=False)
    foundation_model: torch.nn.Module | None = field(init=False)
    head: str | None = field(init=False)
    batch_note: list[str] = field(init=False)
    budget: EdgeBudget = field(init=False)
    # preflight
    outcome: PreflightOutcome = field(init=False)
    chosen: list[int] = field(init=False)
    split: Split = field(init=False)
    # e0s
    fit: E0Fit = field(init=False)
    warnings: list[str] = field(init=False)
    molecules: list[ase.Atoms] = field(init=False)
    prepared: _Prepared = field(init=False)
    loss: dict[str, Any] = field(init=False)
    inputs: TrainingInputs = field(init=False)
    # training
    kernels: Kernels = field(init=False)
    cost: dict[str, Any] = field(init=False)
    stopped_early: bool = False
    # verifying
    full_path: Path = field(init=False)
    delivered: torch.nn.Module = field(init=False)
    delivered_path: Path = field(init=False)
    checks: dict[str, Any] = field(init=False)
    isolated_energies: dict[str, float] = field(init=False)
    # exporting
    held_out: list[ase.Atoms] | None = field(init=False)
    trained: TrainingResult = field(init=False)
    # evaluating
    evaluation: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)

    @property
    def own_model(self) -> torch.nn.Module | None:
        # Scratch needs no foundation: its E0s, findings and warnings never evaluate one (the
        # foundation, when named, only serves as the comparison in the evaluation).
        return self.foundation_model if self.fine_tuning else None

    def picked(self, indices: list[int]) -> list[ase.Atoms]:
        """Configurations at split positions (positions among the chosen candidates)."""
        return [self.configs[self.candidates[self.chosen[i]]] for i in indices]


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
    run = _TrainingRun(spec, files, foundation, work_dir, progress, device, cache)
    try:
        run_stages(TRAINING_STAGES, run, record=progress.stage, should_stop=progress.should_stop)
    finally:
        use_edge_budget(None)  # the next work in this process chooses its own
    return replace(
        run.trained,
        evaluation=run.evaluation,
        artifacts=run.artifacts,
        warnings=run.trained.warnings + accuracy_warnings(run.evaluation),
    )


def _read_data_and_foundation(run: _TrainingRun) -> None:
    spec = run.spec
    run.configs = read_configurations(run.files.train)
    # Isolated atoms are E0 references, set aside from the split (and named in it); a one-atom
    # periodic cell is a crystal and trains like any other configuration.
    run.candidates = [
        index for index, atoms in enumerate(run.configs) if not is_isolated_atom(atoms)
    ]
    if not run.candidates:
        raise InvalidSpecError(
            "the training dataset holds only isolated atoms; nothing to train on"
        )
    run.fine_tuning = not isinstance(spec.strategy, ScratchStrategy)
    run.foundation, run.foundation_model, run.head = run.registered, None, None
    if run.registered is not None:
        run.foundation, run.foundation_model, run.head = working_foundation(
            run.registered,
            load_foundation(run.registered, run.device),
            spec.foundation_head,
            run.work_dir,
        )
        logger.info(
            "foundation %s head=%s file=%s", run.foundation.name, run.head, run.foundation.path
        )
    if run.fine_tuning and (run.foundation is None or run.foundation_model is None):
        raise InvalidSpecError(f"strategy {spec.strategy.name} needs a foundation model")
    molecules = [run.configs[i] for i in run.candidates]
    run.budget = job_edge_budget(spec, molecules, run.foundation_model, run.device)
    run.spec, run.batch_note = batch_size_for_edges(
        spec, molecules, run.foundation_model, run.budget.edges
    )


def _preflight(run: _TrainingRun) -> None:
    spec, configs = run.spec, run.configs
    outcome = preflight_job(
        spec,
        configs,
        run.files,
        run.foundation if run.fine_tuning else None,
        run.own_model,
        run.cache,
        run.device,
    )
    run.outcome = outcome
    _notify(
        run.progress,
        "preflight",
        outcome.report.to_dict(),
        outcome.cost.to_dict() if outcome.cost else None,
    )
    if outcome.report.blocking:
        raise PreflightBlockedError(blocking_message(outcome.report), outcome.report.to_dict())
    if run.fine_tuning:
        assert run.foundation_model is not None
        require_elements_known(run.foundation_model, configs, "training data")


def _split(run: _TrainingRun) -> None:
    spec = run.spec
    # Positions among the candidates (the training molecules); mapped back to the dataset by
    # run.picked.
    run.chosen = _fraction(
        list(range(len(run.candidates))), spec.train_fraction, spec.hyperparameters.seed
    )
    run.split = split_configurations(
        [run.configs[run.candidates[i]] for i in run.chosen],
        valid_fraction=spec.valid_fraction if run.files.valid is None else 0.0,
        test_fraction=spec.split.test_fraction,
        group_by=spec.split.group_by,
        deduplicate=spec.split.deduplicate,
        seed=spec.hyperparameters.seed,
    )
    run.molecules = run.picked(run.split.train)
    run.spec, note = batch_size_within_training_set(run.spec, len(run.molecules))
    run.batch_note += note


def _choose_e0s(run: _TrainingRun) -> None:
    spec, split, outcome = run.spec, run.split, run.outcome
    # E0s are fitted on everything but the test set, as mace's own estimate would see it.
    fitted = sorted(split.train + split.valid)
    predicted = None
    if outcome.predictions is not None and spec.e0s == "estimated":
        predicted = outcome.predictions.energies[[run.chosen[i] for i in fitted]]
    isolated = _isolated_atoms(run.configs, run.files)
    fit = choose_e0s(spec, run.own_model, run.picked(fitted), isolated, predicted=predicted)
    fit = replace(
        fit,
        isolated_atom_references=e0_methods.isolated_atom_references(isolated, _energies(isolated)),
    )
    run.fit = fit
    logger.info("e0s chosen method=%s e0s=%s", fit.method, fit.e0s)
    # Shown on the job from now on: the model learns against them, and a failed job keeps them.
    _notify(run.progress, "e0s_chosen", fit.to_dict())
    run.warnings = e0_warnings(fit, spec) + preflight_warnings(outcome) + run.batch_note


def _write_training_inputs(run: _TrainingRun) -> None:
    valid = run.picked(run.split.valid) if run.files.valid is None else None
    run.prepared = _prepare_inputs(
        run.spec,
        run.files,
        run.foundation,
        run.foundation_model,
        run.fit,
        run.molecules,
        valid,
        run.work_dir,
        run.device,
        run.cache,
    )
    run.fit = run.prepared.fit
    _notify(run.progress, "e0s_chosen", run.fit.to_dict())
    run.loss = loss_record(run.spec, run.molecules)
    run.kernels = training_kernels(
        run.spec, run.device, type(run.foundation_model).__name__ if run.fine_tuning else None
    )
    if run.kernels.reason:
        run.warnings.append(run.kernels.reason)
    run.inputs = replace(
        run.prepared.inputs,
        stress=run.loss["configs_with_stress"] > 0,
        cueq=run.kernels.training == CUEQ,
    )


def _train(run: _TrainingRun) -> None:
    spec, outcome = run.spec, run.outcome
    epochs: set[int] = set()

    def on_epoch(entry: dict) -> None:
        if entry.get("epoch") is not None and entry.get("head") != "replay":
            epochs.add(entry["epoch"])
        run.progress.epoch(entry)

    rungs: RungPlan | None = getattr(run.progress, "rungs", None)

    def train() -> None:
        run_mace_training(
            to_mace_argv(spec, run.inputs),
            results_file=(
                run.work_dir / "results" / f"{RUN_NAME}_run-{spec.hyperparameters.seed}_train.txt"
            ),
            log_file=run.work_dir / MACE_LOG_NAME,
            on_epoch=on_epoch,
            should_stop=run.progress.should_stop,
            rungs=rungs,
        )

    started = time.perf_counter()
    shared = train_sharing_the_device(
        train,
        job_id=getattr(run.progress, "job_id", str(run.work_dir)),
        device=run.device,
        probe_peak_mb=outcome.cost.peak_memory_mb if outcome.cost else None,
        should_stop=run.progress.should_stop,
    )
    run.stopped_early = rungs is not None and rungs.stopped()
    run.cost = {
        "predicted": outcome.cost.to_dict() if outcome.cost else None,
        "actual": actual_cost(time.perf_counter() - started, len(epochs)),
        # Issue 27: the edge budget chosen and why, the kernels, and the GPU's sharing.
        "edge_budget": run.budget.to_dict(),
        "kernels": run.kernels.to_dict(),
        "gpu_sharing": shared,
    }


def _verify(run: _TrainingRun) -> None:
    run.full_path = run.work_dir / "model" / f"{RUN_NAME}.model"
    full = load_own_model(run.full_path, run.device)
    run.delivered = model_checks.target_head(full)
    run.delivered_path = run.full_path
    if run.delivered is not full:
        run.delivered_path = run.work_dir / "model" / f"{RUN_NAME}_target_head.model"
        torch.save(run.delivered, run.delivered_path)
    checks = _strategy_checks(run.spec, full, run.foundation_model, run.molecules, run.work_dir)
    checks["loss"] = run.loss
    # science.md §5: mace can silently swap E0s; the delivered model must carry the chosen ones.
    # Issue 25: every element the model knows, those kept from the foundation included.
    verified = e0_methods.verify_model_e0s(run.delivered, run.fit.model_e0s(), every_element=True)
    run.isolated_energies = verified.isolated_atom_energies
    checks["e0s"] = {
        "verified": True,
        "isolated_atoms_checked": True,
        "elements": run.fit.model_elements(),
        # A lone atom's energy is E0 + this (ScaleShiftMACE: scale · readouts + shift).
        "lone_atom_interaction_ev": verified.lone_atom_interaction_energies,
    }
    run.checks = checks


def _export(run: _TrainingRun) -> None:
    run.held_out = run.picked(run.split.test) if run.split.test else _read(run.files.test)
    # A job stopped early keeps its model, not the exports a deployment would need.
    exports = (
        []
        if run.stopped_early
        else export_all(run.delivered_path, run.held_out or run.molecules, run.work_dir / "exports")
    )
    registered, head = run.registered, run.head
    run.trained = TrainingResult(
        model_path=run.delivered_path,
        e0_fit=run.fit,
        isolated_atom_energies=run.isolated_energies,
        evaluation={},
        checks=run.checks,
        warnings=run.warnings,
        multihead_model_path=run.full_path if run.delivered_path != run.full_path else None,
        replay=run.prepared.replay,
        preflight=run.outcome.report.to_dict(),
        split=recorded_split(
            run.split,
            [run.candidates[i] for i in run.chosen],
            set_aside=set_aside_configurations(run.configs, run.candidates, run.chosen),
        ),
        cost=run.cost,
        exports=exports,
        foundation=(
            {"name": registered.name, "sha256": registered.sha256, "head": head}
            if run.fine_tuning and registered and head
            else None
        ),
        stopped_early=run.stopped_early,
    )
    # Issue 21: the verified model is delivered now; the evaluation below can take far longer
    # than the training (MD), and the model does not depend on it.
    _notify(run.progress, "trained", run.trained)


def _return_freed_memory(run: _TrainingRun) -> None:
    # The preflight's and the checks' predictions freed their tensors, which glibc keeps: give
    # the pages back before mace trains beside this process and before the evaluation grows it.
    return_freed_memory()


def _evaluate(run: _TrainingRun) -> None:
    if run.stopped_early:
        return  # only the survivors of a sweep's halving are evaluated
    files = run.files
    run.evaluation = evaluate_model(
        run.delivered,
        EvaluationData(
            test=run.held_out, replay=_read(files.forgetting), reference=_read(files.reference)
        ),
        run.spec.evaluation,
        # Scratch has no foundation to forget: no forgetting ratio for it.
        foundation=run.own_model,
        on_stage=run.progress.stage,
        on_steps=getattr(run.progress, "steps", None),
        device=run.device,
        md_budget_s=md_budget_s(run.cost["actual"]["training_seconds"]),
    )


def _rss_holes(run: _TrainingRun) -> None:
    settings = run.spec.evaluation.rss_holes
    if settings is None or run.stopped_early:
        return
    flagged = run.work_dir / RSS_FLAGGED_FILE
    skipped: dict[str, str] = {}
    holes = attempt(
        "rss_holes",
        skipped,
        lambda: rss_holes_stage(
            settings,
            run.configs,
            run.delivered_path,
            flagged,
            model_name="fine-tuned",
            foundation=run.foundation if run.fine_tuning else None,
            cache_folder=run.cache.folder / "rss" if run.cache is not None else None,
            device=run.device,
            on_stage=run.progress.stage,
        ),
    )
    if holes is None:
        # Recorded, not fatal: the model was delivered already (issue 25).
        run.evaluation["not_measured"] = run.evaluation.get("not_measured", {}) | skipped
        return
    run.artifacts[RSS_FLAGGED_FILE] = flagged
    run.evaluation["rss_holes"] = holes


# A job's stages in order; the names are what GET /jobs/{id} and the dashboard show. A stage
# without a name records its own (the evaluation suite's) or stays under the one before it.
TRAINING_STAGES: list[Stage[_TrainingRun]] = [
    Stage("preparing data", _read_data_and_foundation),
    Stage("preflight", _preflight),
    Stage(None, _split),
    Stage("e0s", _choose_e0s),
    Stage(None, _write_training_inputs),
    Stage(None, _return_freed_memory),
    Stage("training", _train),
    Stage("verifying", _verify),
    Stage("exporting", _export),
    Stage(None, _return_freed_memory),
    Stage(None, _evaluate),
    Stage(None, _rss_holes),
]


def preflight_job(
    spec: JobSpec,
    configs: list[ase.Atoms],
    files: JobFiles,
    foundation: FoundationModel | None,
    foundation_model: torch.nn.Module | None,
    cache: PredictionCache | None,
    device: str,
) -> PreflightOutcome:
    """core.science.preflight on a job's files: the findings, and the foundation's energies that E0
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


def accuracy_warnings(evaluation: dict[str, Any] | EvaluationSections) -> list[str]:
    """Labels on which the delivered model is worse than predicting zero (issue 18 item 3)."""
    warnings = []
    for name, metrics in (EvaluationSections.from_json(evaluation).accuracy or {}).items():
        for label in metrics.worse_than_zero:
            rmse, rms, unit = metrics.zero_baseline(label)
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
        r_max = mace_model.cutoff(model)
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
    if valid:
        valid_file = work_dir / "valid.extxyz"
        write_mace_extxyz(valid, valid_file)
    elif files.valid is not None:
        valid_file = work_dir / "valid.extxyz"
        write_mace_extxyz(read_configurations(files.valid), valid_file)
    if isinstance(spec.strategy, ScratchStrategy):
        inputs = TrainingInputs(work_dir, train_file, valid_file, None, fit.e0s, device)
        return _Prepared(inputs, None, fit)
    assert foundation is not None and foundation_model is not None
    replay = replay_of(spec.strategy)
    if replay is None:
        fit = e0_methods.for_model_elements(fit, foundation_model, spec.elements)
        copy_file = work_dir / "foundation_with_e0s.model"
        torch.save(e0_methods.with_e0s(foundation_model, fit.e0s), copy_file)
        inputs = TrainingInputs(work_dir, train_file, valid_file, copy_file, fit.e0s, device)
        return _Prepared(inputs, None, fit)
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
    # given for every element the model keeps (mace pads missing ones with 0 eV).
    fit = e0_methods.for_model_elements(
        fit, foundation_model, spec.elements, replay_elements=replay_file.elements
    )
    e0s = fit.model_e0s()
    # mace reads the foundation itself for multihead fine-tuning: it gets a pickle this service
    # writes from the model rebuilt from its safe form, never a file someone uploaded.
    foundation_file = write_mace_foundation(foundation_model, work_dir / "foundation.model")
    inputs = TrainingInputs(
        work_dir, train_file, valid_file, foundation_file, e0s, device, replay_file.path
    )
    return _Prepared(inputs, replay_file, fit)


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
    level = freeze_level_of(spec.strategy)
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
            f"meV/atom with its own E0s (above {E0_MISMATCH_MEV_PER_ATOM:.0f} meV/atom); the data "
            "likely come from another level of theory: use e0s='estimated' or isolated atoms"
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
    known = set(mace_model.atomic_numbers(model))
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
