"""How long the two MD runs are (science.md §3; docs/md-stability.md).

The study ran 250 ps at 100 K and a 50 → 800 K ramp over 50 ps. A job may ask for any length up
to those (`evaluation.md_constant_ps`, `evaluation.md_ramp_ps`); a length left unset is sized so
that the job's MD takes about MD_SHARE_OF_TRAINING of its training time on the worker's device:
the step time of the model on each structure is measured over a few steps first, and the budget
is shared between the structures and then between the two runs, equally, each capped at the
study's length (what the ramp cannot use goes to the constant run). No run is shorter than
MIN_RUN_STEPS, whatever the budget.
"""

from dataclasses import dataclass

from core.evaluation.md import (
    CONSTANT_TEMPERATURE_RUN,
    DEFAULT_SETTINGS,
    STUDY_PS,
    TEMPERATURE_RAMP_RUN,
    MDRunSpec,
    RunKind,
)

MD_SHARE_OF_TRAINING = 0.25
# The budget of an evaluation whose model has no recorded training time (a foundation model).
DEFAULT_MD_BUDGET_S = 120.0
# 0.05 ps at 0.5 fs: the README demo's model went from 44 K to 2700 K within 0.025 ps.
MIN_RUN_STEPS = 100
STEP_ROUNDING = 10  # run lengths in whole frames (core.evaluation.md: a frame every 10 steps)


@dataclass(frozen=True)
class MDLengths:
    """The lengths a job asked for; None: sized to the budget."""

    constant_ps: float | None = None
    ramp_ps: float | None = None
    max_steps: int | None = None  # a cap on every run, for quick runs


@dataclass(frozen=True)
class MDPlan:
    runs: tuple[MDRunSpec, MDRunSpec]
    basis: str  # how the lengths were chosen, shown beside them


def md_budget_s(training_seconds: float | None) -> float:
    """Wall seconds the evaluation's MD may take, all structures and runs together."""
    if training_seconds is None or training_seconds <= 0:
        return DEFAULT_MD_BUDGET_S
    return MD_SHARE_OF_TRAINING * training_seconds


def plan_md_runs(
    lengths: MDLengths,
    *,
    step_seconds: float,
    budget_s: float,
    n_structures: int = 1,
    timestep_fs: float = DEFAULT_SETTINGS.timestep_fs,
) -> MDPlan:
    """The constant-temperature run and the ramp for one of `n_structures` structures."""
    steps_per_ps = 1000.0 / timestep_fs
    study = {kind: round(ps * steps_per_ps) for kind, ps in STUDY_PS.items()}
    asked: dict[RunKind, int | None] = {
        "constant": _steps(lengths.constant_ps, steps_per_ps),
        "ramp": _steps(lengths.ramp_ps, steps_per_ps),
    }
    affordable = budget_s / max(step_seconds, 1e-9) / max(n_structures, 1)
    ramp = asked["ramp"]
    if ramp is None:
        share = affordable / 2 if asked["constant"] is None else affordable - asked["constant"]
        ramp = _budgeted(min(share, study["ramp"]))
    constant = asked["constant"]
    if constant is None:
        constant = _budgeted(min(affordable - ramp, study["constant"]))
    cap = lengths.max_steps
    steps = {
        "constant": constant if cap is None else min(constant, cap),
        "ramp": ramp if cap is None else min(ramp, cap),
    }
    runs = (
        MDRunSpec(CONSTANT_TEMPERATURE_RUN.name, 100.0, 100.0, steps["constant"]),
        MDRunSpec(TEMPERATURE_RAMP_RUN.name, 50.0, 800.0, steps["ramp"]),
    )
    return MDPlan(runs, _basis(asked, lengths, step_seconds, budget_s, n_structures))


def _steps(ps: float | None, steps_per_ps: float) -> int | None:
    return None if ps is None else max(1, round(ps * steps_per_ps))


def _budgeted(steps: float) -> int:
    return max(MIN_RUN_STEPS, int(steps) // STEP_ROUNDING * STEP_ROUNDING)


def _basis(
    asked: dict[RunKind, int | None],
    lengths: MDLengths,
    step_seconds: float,
    budget_s: float,
    n_structures: int,
) -> str:
    parts = []
    if None in asked.values():
        shared = f", shared by {n_structures} structures" if n_structures > 1 else ""
        parts.append(
            f"sized to an MD budget of {budget_s:.3g} s{shared} at {step_seconds * 1000:.3g} ms "
            f"per step (at least {MIN_RUN_STEPS} steps)"
        )
    if any(value is not None for value in asked.values()):
        parts.append("lengths as asked")
    if lengths.max_steps is not None:
        parts.append(f"at most {lengths.max_steps} steps per run (md_steps)")
    return "; ".join(parts)
