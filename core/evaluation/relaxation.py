"""Relax–rattle of one starting structure under a pressure: cell and positions relaxed with
ASE's FrechetCellFilter and FIRE, then rattled and relaxed again, `cycles` times.

Choices the study did not state (docs/science-and-evaluation.md): FIRE as the optimizer; `cycles`
counts relaxations (rattles happen between them); the rattle moves atoms only, by a Gaussian of
`rattle_a` per Cartesian component.
"""

import hashlib
import math
from dataclasses import dataclass, field, replace

import ase
import numpy as np
from ase import units
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from core.evaluation.rss_criteria import min_distance_ratio

# Below this a cell has collapsed whatever the composition; relaxing further only makes the
# neighbour lists explode.
COLLAPSED_VOLUME_PER_ATOM_A3 = 0.5


@dataclass(frozen=True)
class RelaxSettings:
    pressures_gpa: tuple[float, ...]
    cycles: int
    relax_steps: int
    fmax_ev_per_a: float
    rattle_a: float
    seed: int


@dataclass(frozen=True)
class StartingStructure:
    composition: str
    index: int
    atoms: ase.Atoms | None
    space_group: int | None
    failure: str | None


@dataclass(frozen=True)
class Relaxed:
    """One starting structure relaxed at one pressure, or why that failed."""

    composition: str
    index: int
    pressure_gpa: float
    space_group: int | None
    atoms: ase.Atoms | None = field(default=None, repr=False)
    energy_per_atom: float | None = None
    volume_per_atom: float | None = None
    min_distance_ratio: float | None = None  # closest pair over its covalent radii sum
    steps: int = 0
    failure: str | None = None


class _NotFinite(Exception):
    pass


def relax_rattle(
    start: StartingStructure,
    calculator: Calculator,
    pressure_gpa: float,
    settings: RelaxSettings,
) -> Relaxed:
    """Relax cell and positions at `pressure_gpa`, then rattle and relax again, `cycles` times."""
    base = Relaxed(start.composition, start.index, pressure_gpa, start.space_group)
    if start.atoms is None:
        return replace(base, failure=f"no starting structure: {start.failure}")
    rng = np.random.default_rng(
        [
            settings.seed,
            start.index,
            _digest_int(start.composition),
            int(round(pressure_gpa * 1000)),
        ]
    )
    atoms = start.atoms.copy()
    atoms.calc = calculator
    steps = 0
    try:
        for cycle in range(settings.cycles):
            if cycle > 0:
                atoms.positions += rng.normal(0.0, settings.rattle_a, atoms.positions.shape)
            steps += _relax(atoms, pressure_gpa, settings)
            if _volume_per_atom(atoms) < COLLAPSED_VOLUME_PER_ATOM_A3:
                break
        energy = float(atoms.get_potential_energy())
        if not math.isfinite(energy):
            raise _NotFinite("the model returned a non-finite energy after relaxing")
    except _NotFinite as error:
        return replace(base, steps=steps, failure=str(error))
    except Exception as error:  # a model or an optimizer can fail in many ways; record it
        return replace(base, steps=steps, failure=f"{type(error).__name__}: {error}")
    result = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    return replace(
        base,
        atoms=result,
        energy_per_atom=energy / len(atoms),
        volume_per_atom=_volume_per_atom(atoms),
        min_distance_ratio=min_distance_ratio(result),
        steps=steps,
    )


def _relax(atoms: ase.Atoms, pressure_gpa: float, settings: RelaxSettings) -> int:
    cell_filter = FrechetCellFilter(atoms, scalar_pressure=pressure_gpa * units.GPa)
    optimizer = FIRE(cell_filter, logfile=None)
    for _converged in optimizer.irun(fmax=settings.fmax_ev_per_a, steps=settings.relax_steps):
        # irun yields after the forces of the current geometry are known: a NaN stops here,
        # before the optimizer moves atoms to NaN positions.
        results = atoms.calc.results
        quantities = ("energy", "forces", "stress")
        if not all(np.all(np.isfinite(results[k])) for k in quantities if k in results):
            raise _NotFinite(
                f"the model returned a non-finite energy, forces or stress at step "
                f"{optimizer.nsteps}"
            )
        if _volume_per_atom(atoms) < COLLAPSED_VOLUME_PER_ATOM_A3:
            break
    steps: int = optimizer.nsteps
    return steps


def _volume_per_atom(atoms: ase.Atoms) -> float:
    return abs(float(atoms.cell.volume)) / len(atoms)


def _digest_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
