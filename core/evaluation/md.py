"""MD stability (science.md §3): does a model keep structures physical under Langevin dynamics?

Two runs per structure, as in the study: one at a constant low temperature (100 K; the study ran
250 ps) and one temperature ramp (50 → 800 K; the study ran 50 ps). How long each run is here
(core.evaluation.md_plan), what it runs on (core.evaluation.md_systems: replicated until it has a
temperature) and what ends it as unstable (core.evaluation.md_criteria) have their own modules;
every run records its length beside the study's, so a verdict says what it covers.

Choices the study did not state:
- Langevin dynamics at constant volume (NVT): a barostat needs stresses and periodic cells, but
  most fine-tuning targets include molecules in vacuum; the failures looked for (bonds breaking,
  atoms fusing, heat runaway) do not depend on the ensemble.
- Time step 0.5 fs: stable for hydrogen vibrations (period ~9 fs) with a good model, so a failure
  is the model's, not the integrator's.
- Friction 0.02 fs⁻¹ (50 fs relaxation time): strong enough that the thermostat follows a ramp
  lasting a few hundred femtoseconds, weak enough not to damp bond vibrations away.
"""

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

import ase
import numpy as np
import torch
from ase import units
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from mace.calculators import MACECalculator

from core.evaluation.md_criteria import Criteria, Failure, FailureReason, Monitor
from core.science.cueq import inference_uses_cueq

T = TypeVar("T")
ProgressCallback = Callable[[float, str], None]
RunKind = Literal["constant", "ramp"]

# Traces (time, temperature, energy) are stored with the job and drawn in its report; a bounded
# number of points keeps a 250 ps run's record small and its plot readable.
MAX_TRACE_POINTS = 200
# The study's lengths (science.md §3), the most a run may last here.
STUDY_PS: dict[RunKind, float] = {"constant": 250.0, "ramp": 50.0}


@dataclass(frozen=True)
class MDRunSpec:
    """One run: the thermostat's target goes linearly from start to end over n_steps."""

    name: str
    start_temperature_k: float
    end_temperature_k: float
    n_steps: int

    @property
    def kind(self) -> RunKind:
        return "constant" if self.start_temperature_k == self.end_temperature_k else "ramp"


CONSTANT_TEMPERATURE_RUN = MDRunSpec("constant_100K", 100.0, 100.0, 400)
TEMPERATURE_RAMP_RUN = MDRunSpec("ramp_50_800K", 50.0, 800.0, 400)


@dataclass(frozen=True)
class MDSettings:
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.02
    frame_interval: int = 10  # steps between the frames kept for RDFs
    criteria: Criteria = Criteria()
    seed: int = 0


DEFAULT_SETTINGS = MDSettings()


@dataclass(frozen=True)
class MDRun:
    name: str
    kind: RunKind
    start_temperature_k: float
    end_temperature_k: float
    timestep_fs: float
    n_steps: int
    steps_completed: int
    time_survived_ps: float
    total_time_ps: float
    study_ps: float  # the study's length for this kind of run
    stable: bool
    failure_reason: FailureReason | None
    failure_detail: str | None  # what failed, at which step, between which atoms
    max_energy_drift_ev_per_atom: float  # largest |E_total(t) - E_total(0)| / N seen
    # Closest pair seen, over the sum of its covalent radii; None for a single atom.
    min_distance_ratio: float | None
    peak_temperature_k: float  # highest mean over a window of the runaway criterion
    bonds_at_start: int  # bonds the bonds_changed criterion watched
    final_temperature_k: float
    # Snapshots every frame_interval steps (no calculator), for radial distribution functions;
    # left out of to_dict, which is what gets stored.
    frames: tuple[ase.Atoms, ...] = field(repr=False)
    # Every frame_interval steps from t = 0, thinned to at most MAX_TRACE_POINTS points.
    time_ps: tuple[float, ...] = ()
    temperature_k: tuple[float, ...] = ()
    total_energy_ev: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "frames"}
        return values | {"n_frames": len(self.frames)}


@dataclass(frozen=True)
class MDStability:
    runs: tuple[MDRun, ...]

    @property
    def stable(self) -> bool:
        return all(run.stable for run in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"stable": self.stable, "runs": [run.to_dict() for run in self.runs]}


def model_calculator(model: torch.nn.Module, device: str = "cpu") -> Calculator:
    """An ASE calculator for an in-memory MACE model, in float64; the caller's model is untouched.

    MACECalculator moves the model it is given and switches off requires_grad on every parameter,
    so it gets a copy.
    """
    return MACECalculator(
        models=copy.deepcopy(model),
        device=device,
        default_dtype="float64",
        enable_cueq=inference_uses_cueq(device),
    )


def md_stability(
    model: torch.nn.Module | Calculator,
    atoms: ase.Atoms,
    *,
    runs: Sequence[MDRunSpec] = (CONSTANT_TEMPERATURE_RUN, TEMPERATURE_RAMP_RUN),
    settings: MDSettings = DEFAULT_SETTINGS,
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
) -> MDStability:
    """Each run from `atoms` with fresh velocities; the result is stable if every run is."""
    calculator = _as_calculator(model, device)
    results = []
    for index, spec in enumerate(runs):
        progress = None if on_progress is None else _share_of(on_progress, index, len(runs))
        results.append(run_md(calculator, atoms, spec, settings=settings, on_progress=progress))
    return MDStability(tuple(results))


def run_md(
    model: torch.nn.Module | Calculator,
    atoms: ase.Atoms,
    spec: MDRunSpec,
    *,
    settings: MDSettings = DEFAULT_SETTINGS,
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
) -> MDRun:
    """Langevin dynamics on a copy of `atoms`, stopped at the first sign of failure."""
    system = atoms.copy()
    system.calc = _as_calculator(model, device)
    dynamics = _start(system, spec, settings)
    monitor = Monitor(system, settings.criteria, settings.timestep_fs)
    frames: list[ase.Atoms] = []
    trace = [_trace_point(system, 0, settings)]
    failure: Failure | None = None
    step = 0
    while step < spec.n_steps and failure is None:
        step += 1
        target = _target_temperature(spec, step)
        dynamics.set_temperature(temperature_K=target)
        dynamics.step()
        # Checked every step: one more step from exploded positions can cost minutes and
        # gigabytes in the model's neighbour list.
        failure = monitor.failure(system, step, target, last=step == spec.n_steps)
        if step % settings.frame_interval == 0 and failure is None:
            frames.append(_snapshot(system))
            trace.append(_trace_point(system, step, settings))
            if on_progress is not None:
                on_progress(step / spec.n_steps, _progress_message(spec, step, system))
    completed = step if failure is None else step - 1
    time_ps, temperature, energy = zip(*_thinned(trace, MAX_TRACE_POINTS), strict=True)
    return MDRun(
        name=spec.name,
        kind=spec.kind,
        start_temperature_k=spec.start_temperature_k,
        end_temperature_k=spec.end_temperature_k,
        timestep_fs=settings.timestep_fs,
        n_steps=spec.n_steps,
        steps_completed=completed,
        time_survived_ps=completed * settings.timestep_fs / 1000,
        total_time_ps=spec.n_steps * settings.timestep_fs / 1000,
        study_ps=STUDY_PS[spec.kind],
        stable=failure is None,
        failure_reason=None if failure is None else failure[0],
        failure_detail=None if failure is None else failure[1],
        max_energy_drift_ev_per_atom=monitor.max_drift,
        min_distance_ratio=monitor.min_distance_ratio,
        peak_temperature_k=monitor.peak_temperature_k,
        bonds_at_start=monitor.bonds_at_start,
        final_temperature_k=float(system.get_temperature()),
        frames=tuple(frames),
        time_ps=time_ps,
        temperature_k=temperature,
        total_energy_ev=energy,
    )


def measure_step_seconds(
    calculator: Calculator,
    atoms: ase.Atoms,
    *,
    steps: int = 10,
    settings: MDSettings = DEFAULT_SETTINGS,
) -> float:
    """Wall seconds per MD step of `atoms` with this calculator, the checks included: a few
    steps at the constant run's temperature after one untimed call (the model's first call
    builds what later calls reuse). Ends early at a failure: steps from exploded positions
    measure nothing useful and can take minutes."""
    system = atoms.copy()
    system.calc = calculator
    dynamics = _start(system, CONSTANT_TEMPERATURE_RUN, settings)
    monitor = Monitor(system, settings.criteria, settings.timestep_fs)
    target = CONSTANT_TEMPERATURE_RUN.start_temperature_k
    started = time.perf_counter()
    done = 0
    while done < steps:
        done += 1
        dynamics.step()
        if monitor.failure(system, done, target, last=False) is not None:
            break
    return (time.perf_counter() - started) / done


def _trace_point(atoms: ase.Atoms, step: int, settings: MDSettings) -> tuple[float, float, float]:
    total = float(atoms.get_total_energy())
    return (
        step * settings.timestep_fs / 1000,
        float(atoms.get_temperature()),
        total if math.isfinite(total) else float("nan"),
    )


def _thinned(points: list[T], limit: int) -> list[T]:
    """At most `limit` points, evenly spread, always keeping the first and the last."""
    if len(points) <= limit:
        return points
    picked = np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))
    return [points[i] for i in picked]


def _as_calculator(model: torch.nn.Module | Calculator, device: str) -> Calculator:
    return model if isinstance(model, Calculator) else model_calculator(model, device)


def _start(atoms: ase.Atoms, spec: MDRunSpec, settings: MDSettings) -> Langevin:
    rng = np.random.default_rng(settings.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=spec.start_temperature_k, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)  # a spinning molecule would carry kinetic energy that is not heat
    # fixcm=False: ASE deprecates its centre-of-mass fix, and a slowly drifting centre of mass
    # changes no distance this module checks.
    return Langevin(
        atoms,
        settings.timestep_fs * units.fs,
        temperature_K=spec.start_temperature_k,
        friction=settings.friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )


def _target_temperature(spec: MDRunSpec, step: int) -> float:
    fraction = step / spec.n_steps
    return spec.start_temperature_k + fraction * (spec.end_temperature_k - spec.start_temperature_k)


def _snapshot(atoms: ase.Atoms) -> ase.Atoms:
    return ase.Atoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )


def _progress_message(spec: MDRunSpec, step: int, atoms: ase.Atoms) -> str:
    return f"{spec.name}: step {step}/{spec.n_steps}, {atoms.get_temperature():.0f} K"


def _share_of(on_progress: ProgressCallback, index: int, count: int) -> ProgressCallback:
    """Report run `index` of `count` as its slice of the whole evaluation's progress."""

    def report(fraction: float, message: str) -> None:
        on_progress((index + fraction) / count, message)

    return report
