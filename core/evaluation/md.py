"""MD stability (science.md §3): does a model keep structures physical under Langevin dynamics?

Two runs per structure, as in the study: one at a constant low temperature and one temperature
ramp. The study ran 250 ps at 100 K (NPT) and a 50 → 800 K ramp over 50 ps; the defaults here are
CPU-sized (0.2 ps each, ~15 ms per step for 14 atoms on one CPU core). They catch what fails
early (explosions, atoms fusing); pass longer MDRunSpecs for a verdict comparable to the study's.

Choices the study did not state:
- Langevin dynamics at constant volume (NVT): a barostat needs stresses and periodic cells, but
  most fine-tuning targets include molecules in vacuum; the failures looked for (atoms fusing,
  energy runaway) do not depend on the ensemble.
- Time step 0.5 fs: stable for hydrogen vibrations (period ~9 fs) with a good model, so a failure
  is the model's, not the integrator's.
- Friction 0.02 fs⁻¹ (50 fs relaxation time): strong enough that the thermostat follows a ramp
  lasting a few hundred femtoseconds, weak enough not to damp bond vibrations away.
"""

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

import ase
import numpy as np
import torch
from ase import units
from ase.calculators.calculator import Calculator
from ase.data import covalent_radii
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from mace.calculators import MACECalculator

from core.science.cueq import inference_uses_cueq

T = TypeVar("T")
ProgressCallback = Callable[[float, str], None]
FailureReason = Literal["not_finite", "close_contact", "energy_drift"]
_Failure = tuple[FailureReason, str]  # reason and a message naming the step

# science.md §3 (random structure search): closer than half the sum of covalent radii is
# unphysical for any bond.
MIN_DISTANCE_FRACTION = 0.5
# Traces (time, temperature, energy) are stored with the job and drawn in its report; a bounded
# number of points keeps a 250 ps run's record small and its plot readable.
MAX_TRACE_POINTS = 200


@dataclass(frozen=True)
class MDRunSpec:
    """One run: the thermostat's target goes linearly from start to end over n_steps."""

    name: str
    start_temperature_k: float
    end_temperature_k: float
    n_steps: int


CONSTANT_TEMPERATURE_RUN = MDRunSpec("constant_100K", 100.0, 100.0, 400)
TEMPERATURE_RAMP_RUN = MDRunSpec("ramp_50_800K", 50.0, 800.0, 400)


@dataclass(frozen=True)
class MDSettings:
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.02
    frame_interval: int = 10  # steps between the frames kept for RDFs
    min_distance_fraction: float = MIN_DISTANCE_FRACTION
    # Heating 50 → 800 K adds ~0.1 eV/atom of kinetic energy; 1 eV/atom is a runaway, not heat.
    max_energy_drift_ev_per_atom: float = 1.0
    seed: int = 0


DEFAULT_SETTINGS = MDSettings()


@dataclass(frozen=True)
class MDRun:
    name: str
    start_temperature_k: float
    end_temperature_k: float
    timestep_fs: float
    n_steps: int
    steps_completed: int
    time_survived_ps: float
    total_time_ps: float
    stable: bool
    failure_reason: FailureReason | None
    failure_detail: str | None  # what failed, at which step, between which atoms
    max_energy_drift_ev_per_atom: float  # largest |E_total(t) - E_total(0)| / N seen
    # Closest pair seen, over the sum of its covalent radii; None for a single atom.
    min_distance_ratio: float | None
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
    monitor = _Monitor(system, settings)
    frames: list[ase.Atoms] = []
    trace = [_trace_point(system, 0, settings)]
    failure: _Failure | None = None
    step = 0
    while step < spec.n_steps and failure is None:
        step += 1
        dynamics.set_temperature(temperature_K=_target_temperature(spec, step))
        dynamics.step()
        # Checked every step: one more step from exploded positions can cost minutes and
        # gigabytes in the model's neighbour list.
        failure = monitor.failure(system, step)
        if step % settings.frame_interval == 0 and failure is None:
            frames.append(_snapshot(system))
            trace.append(_trace_point(system, step, settings))
            if on_progress is not None:
                on_progress(step / spec.n_steps, _progress_message(spec, step, system))
    completed = step if failure is None else step - 1
    time_ps, temperature, energy = zip(*_thinned(trace, MAX_TRACE_POINTS), strict=True)
    return MDRun(
        name=spec.name,
        start_temperature_k=spec.start_temperature_k,
        end_temperature_k=spec.end_temperature_k,
        timestep_fs=settings.timestep_fs,
        n_steps=spec.n_steps,
        steps_completed=completed,
        time_survived_ps=completed * settings.timestep_fs / 1000,
        total_time_ps=spec.n_steps * settings.timestep_fs / 1000,
        stable=failure is None,
        failure_reason=None if failure is None else failure[0],
        failure_detail=None if failure is None else failure[1],
        max_energy_drift_ev_per_atom=monitor.max_drift,
        min_distance_ratio=monitor.min_distance_ratio,
        final_temperature_k=float(system.get_temperature()),
        frames=tuple(frames),
        time_ps=time_ps,
        temperature_k=temperature,
        total_energy_ev=energy,
    )


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


class _Monitor:
    """Checks each new state of a run against the failure criteria; remembers the worst seen."""

    def __init__(self, atoms: ase.Atoms, settings: MDSettings) -> None:
        self.settings = settings
        self.reference_energy = float(atoms.get_total_energy())
        self.max_drift = 0.0
        closest = _closest_pair(atoms)
        self._min_ratio = math.inf if closest is None else closest[2]

    @property
    def min_distance_ratio(self) -> float | None:
        return None if math.isinf(self._min_ratio) else self._min_ratio

    def failure(self, atoms: ase.Atoms, step: int) -> _Failure | None:
        # Finite first: distances and energies of NaN positions mean nothing.
        if not _is_finite(atoms):
            return "not_finite", f"step {step}: energy, forces or positions are not finite"
        return self._close_contact(atoms, step) or self._energy_drift(atoms, step)

    def _close_contact(self, atoms: ase.Atoms, step: int) -> _Failure | None:
        closest = _closest_pair(atoms)
        if closest is None:
            return None
        first, second, ratio = closest
        self._min_ratio = min(ratio, self._min_ratio)
        if ratio >= self.settings.min_distance_fraction:
            return None
        symbols = atoms.get_chemical_symbols()
        return "close_contact", (
            f"step {step}: atoms {first} ({symbols[first]}) and {second} ({symbols[second]}) "
            f"are {ratio:.2f} × the sum of their covalent radii apart "
            f"(limit {self.settings.min_distance_fraction})"
        )

    def _energy_drift(self, atoms: ase.Atoms, step: int) -> _Failure | None:
        drift = abs(float(atoms.get_total_energy()) - self.reference_energy) / len(atoms)
        self.max_drift = max(self.max_drift, drift)
        if drift <= self.settings.max_energy_drift_ev_per_atom:
            return None
        return "energy_drift", (
            f"step {step}: total energy changed by {drift:.3g} eV/atom "
            f"(limit {self.settings.max_energy_drift_ev_per_atom})"
        )


def _is_finite(atoms: ase.Atoms) -> bool:
    return bool(
        np.isfinite(atoms.get_potential_energy())
        and np.isfinite(atoms.positions).all()
        and np.isfinite(atoms.get_forces()).all()
    )


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


def _closest_pair(atoms: ase.Atoms) -> tuple[int, int, float] | None:
    """The pair with the smallest distance over the sum of its covalent radii, and that ratio."""
    if len(atoms) < 2:
        return None
    # All pairs by minimum image, not a neighbour list: a neighbour list bins space, and a
    # structure that has just exploded spans kilometres.
    distances = atoms.get_all_distances(mic=atoms.pbc.any())
    radii = covalent_radii[atoms.numbers]
    ratios = distances / (radii[:, None] + radii[None, :])
    np.fill_diagonal(ratios, np.inf)
    first, second = np.unravel_index(np.argmin(ratios), ratios.shape)
    return int(first), int(second), float(ratios[first, second])


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
