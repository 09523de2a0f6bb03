"""Run one fine-tuning job on local files: E0s, mace-torch training, checks, test metrics.

Plain functions without database or queue, so tests call them directly; core.workflows.runner adds
the job row and the artifact store around them.
"""

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import ase
import numpy as np
import torch

from core.artifacts.storage_keys import MACE_LOG_NAME, RSS_FLAGGED_FILE
from core.data.datasets import read_configurations
from core.data.label_values import is_isolated_atom
from core.data.splits import Split, split_configurations
from core.errors import InvalidSpecError, PreflightBlockedError
from core.evaluation.md_plan import md_budget_s
from core.evaluation.rss import rss_holes_stage
from core.evaluation.suite import EvaluationData, evaluate_model
from core.evaluation.unmeasured import attempt
from core.registry.foundation_heads import working_foundation
from core.registry.foundations import FoundationModel, load_foundation, load_own_model
from core.reporting.report_models import EvaluationSections
from core.science import e0s as e0_methods
from core.science import model_checks
from core.science.batch_limits import batch_size_within_training_set
from core.science.cache import PredictionCache
from core.science.cost import actual_cost
from core.science.cueq import CUEQ, Kernels, training_kernels
from core.science.e0_choice import choose_e0s, e0_warnings, label_energies
from core.science.e0s import E0Fit
from core.science.edge_budget import EdgeBudget
from core.science.exports import export_all
from core.science.inference import use_edge_budget
from core.science.mace_process import RungPlan, run_mace_training
from core.science.preflight import PreflightOutcome, blocking_message
from core.science.spec import JobSpec, ScratchStrategy
from core.science.strategies import RUN_NAME, TrainingInputs, to_mace_argv
from core.service.stages import Stage, run_stages
from core.workflows.device_budget import job_edge_budget
from core.workflows.gpu_share import train_sharing_the_device
from core.workflows.job_preflight import preflight_job, preflight_warnings
from core.workflows.mace_inputs import (
    PreparedInputs,
    batch_size_for_edges,
    loss_record,
    prepare_inputs,
    require_elements_known,
)
from core.workflows.memory import return_freed_memory
from core.workflows.training_records import (
    JobFiles,
    Progress,
    TrainingResult,
    notify,
    recorded_split,
    set_aside_configurations,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


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
    prepared: PreparedInputs = field(init=False)
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
    notify(
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
        isolated_atom_references=e0_methods.isolated_atom_references(
            isolated, label_energies(isolated)
        ),
    )
    run.fit = fit
    logger.info("e0s chosen method=%s e0s=%s", fit.method, fit.e0s)
    # Shown on the job from now on: the model learns against them, and a failed job keeps them.
    notify(run.progress, "e0s_chosen", fit.to_dict())
    run.warnings = e0_warnings(fit, spec) + preflight_warnings(outcome) + run.batch_note


def _write_training_inputs(run: _TrainingRun) -> None:
    valid = run.picked(run.split.valid) if run.files.valid is None else None
    run.prepared = prepare_inputs(
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
    notify(run.progress, "e0s_chosen", run.fit.to_dict())
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
    checks = model_checks.strategy_checks(
        run.spec, full, run.foundation_model, run.molecules, run.work_dir
    )
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
    notify(run.progress, "trained", run.trained)


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
