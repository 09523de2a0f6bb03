"""The MD part of the evaluation suite: which structures run, how long, and their report rows.

Each test structure taken for MD is made big enough to have a temperature
(core.evaluation.md_systems), its step time measured, its two runs sized to the budget
(core.evaluation.md_plan) and run (core.evaluation.md). A structure MD cannot judge gets a row
that says why instead of a verdict.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import ase
import torch

from core.evaluation.md import MDStability, md_stability, measure_step_seconds, model_calculator
from core.evaluation.md_plan import MDLengths, MDPlan, plan_md_runs
from core.evaluation.md_systems import MDNotApplicable, MDSystem, first_copy, md_system
from core.registry import mace_model
from core.reporting.report_models import MDRunReport
from core.science.spec import EvaluationSettings

StageCallback = Callable[[str], None]
# (stage, done, total): progress inside a long stage, e.g. ("md 1/3", 120, 800) MD steps.
StepsCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MDOutcome:
    runs: list[MDRunReport]
    frames: list[ase.Atoms]  # as the original structures (first copies), for RDFs


def md_outcome(
    model: torch.nn.Module,
    test: list[ase.Atoms],
    settings: EvaluationSettings,
    *,
    budget_s: float,
    on_stage: StageCallback,
    on_steps: StepsCallback | None = None,
    device: str = "cpu",
) -> MDOutcome:
    """MD on the first `settings.md_structures` test structures MD can judge, within
    `budget_s` wall seconds where the lengths are not given."""
    cutoff = mace_model.cutoff(model)
    systems, skipped = _systems(test, cutoff, settings.md_structures)
    # Rows for structures MD cannot judge only when none can be judged: a test set of molecules
    # and their isolated atoms is judged by its molecules.
    runs = [] if systems else [not_applicable_report(*item) for item in skipped]
    frames: list[ase.Atoms] = []
    calculator = model_calculator(model, device)
    lengths = MDLengths(settings.md_constant_ps, settings.md_ramp_ps, settings.md_steps)
    for index, system in enumerate(systems):
        name = f"md {index + 1}/{len(systems)}"
        on_stage(f"{name}: measuring the step time")
        plan = plan_md_runs(
            lengths,
            step_seconds=measure_step_seconds(calculator, system.atoms),
            budget_s=budget_s,
            n_structures=len(systems),
        )
        total = sum(run.n_steps for run in plan.runs)
        on_stage(f"{name} 0/{total} steps")
        result = md_stability(
            calculator,
            system.atoms,
            runs=plan.runs,
            on_progress=_steps_of(on_steps, name, total),
        )
        runs += md_reports(result, system, plan)
        frames += [first_copy(frame, system) for run in result.runs for frame in run.frames]
    return MDOutcome(runs, frames)


def _systems(
    test: list[ase.Atoms], cutoff: float, count: int
) -> tuple[list[MDSystem], list[tuple[str, str]]]:
    systems: list[MDSystem] = []
    skipped: list[tuple[str, str]] = []
    for atoms in test:
        if len(systems) == count:
            break
        try:
            systems.append(md_system(atoms, cutoff))
        except MDNotApplicable as reason:
            if len(skipped) < count:
                skipped.append((atoms.get_chemical_formula(), str(reason)))
    return systems, skipped


def _steps_of(
    on_steps: StepsCallback | None, name: str, total: int
) -> Callable[[float, str], None] | None:
    if on_steps is None:
        return None

    def report(fraction: float, _message: str) -> None:
        on_steps(name, round(fraction * total), total)

    return report


def md_reports(
    result: MDStability, system: MDSystem, plan: MDPlan | None = None
) -> list[MDRunReport]:
    return [
        MDRunReport(
            run=run.name,
            kind=run.kind,
            structure=system.structure,
            n_atoms=system.n_atoms,
            replication=system.replication,
            survived_ps=run.time_survived_ps,
            total_ps=run.total_time_ps,
            study_ps=run.study_ps,
            length_basis=plan.basis if plan else None,
            stable=run.stable,
            failure=run.failure_detail,
            failure_reason=run.failure_reason,
            max_energy_drift_ev_per_atom=run.max_energy_drift_ev_per_atom,
            min_distance_ratio=run.min_distance_ratio,
            peak_temperature_K=run.peak_temperature_k,
            bonds_at_start=run.bonds_at_start,
            # Drawn in the report (core.reporting.reports): time, temperature and total energy.
            time_ps=list(run.time_ps),
            temperature_K=list(run.temperature_k),
            energy_ev=[_finite_or_none(value) for value in run.total_energy_ev],
        )
        for run in result.runs
    ]


def not_applicable_report(structure: str, reason: str) -> MDRunReport:
    return MDRunReport(structure=structure, stable=None, not_applicable=reason)


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN; the last point of a run that blew up may be one.
    return value if math.isfinite(value) else None
