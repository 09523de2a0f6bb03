"""Short-range repulsion (science.md §3): dimer curves and compression of whole structures.

A physical potential rises steeply as atoms are pushed together. A model that learnt only from
near-equilibrium data can turn over below its training distances; such a "hole" pulls atoms
together in MD and structure search. Both checks here look for the same symptom: inward from
the curve's minimum, the energy must rise at every step.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations_with_replacement
from typing import Any

import ase
import numpy as np
import torch
from ase.data import atomic_numbers, covalent_radii

from core.evaluation.md import MIN_DISTANCE_FRACTION
from core.evaluation.rdf import pair_label
from core.inference import predict

DEFAULT_DISTANCES = tuple(np.round(np.arange(0.5, 5.0 + 1e-9, 0.05), 3))  # Å
DEFAULT_SCALES = tuple(np.round(np.arange(0.5, 1.0 + 1e-9, 0.025), 3))  # of cell and positions
# Smaller falls are numerical flatness, not a hole.
DEFAULT_TOLERANCE_EV = 1e-3


@dataclass(frozen=True)
class Hole:
    """Inward of `below`, the energy falls by `depth` instead of rising.

    Units are the curve's: Å and eV for a dimer, scale factor and eV/atom for a compression.
    """

    below: float
    depth: float


@dataclass(frozen=True)
class DimerCurve:
    pair: str  # "H-O"
    distances_a: list[float]
    # E(r) - E(A) - E(B), both isolated atoms by the same model, eV
    energies_ev: list[float]
    minimum_distance_a: float
    hole: Hole | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CompressionCurve:
    formula: str
    scales: list[float]  # factors on cell and positions (about the centre of mass in vacuum)
    energies_ev_per_atom: list[float]  # relative to the largest scale
    minimum_scale: float
    hole: Hole | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Repulsion:
    dimers: tuple[DimerCurve, ...]
    compressions: tuple[CompressionCurve, ...]

    @property
    def holes(self) -> list[str]:
        """Names of the dimers and structures whose energy falls on compression."""
        curves = [(curve.pair, curve.hole) for curve in self.dimers]
        curves += [(curve.formula, curve.hole) for curve in self.compressions]
        return [name for name, hole in curves if hole is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "holes": self.holes,
            "dimers": [curve.to_dict() for curve in self.dimers],
            "compressions": [curve.to_dict() for curve in self.compressions],
        }


def short_range_repulsion(
    model: torch.nn.Module,
    elements: Sequence[str],
    structures: Sequence[ase.Atoms] = (),
    *,
    batch_size: int = 32,
    device: str = "cpu",
) -> Repulsion:
    """Dimer curves of every pair of `elements` and a compression curve of each structure."""
    pairs = list(combinations_with_replacement(elements, 2))
    return Repulsion(
        dimers=tuple(
            dimer_curve(model, first, second, batch_size=batch_size, device=device)
            for first, second in pairs
        ),
        compressions=tuple(
            compression_curve(model, atoms, batch_size=batch_size, device=device)
            for atoms in structures
        ),
    )


def dimer_curve(
    model: torch.nn.Module,
    first: str,
    second: str,
    *,
    distances: Sequence[float] = DEFAULT_DISTANCES,
    tolerance_ev: float = DEFAULT_TOLERANCE_EV,
    batch_size: int = 32,
    device: str = "cpu",
) -> DimerCurve:
    """E(r) of a dimer in vacuum, relative to the two isolated atoms, and any hole in it."""
    r = np.sort(np.asarray(distances, dtype=float))
    configs = [ase.Atoms(first), ase.Atoms(second)]
    configs += [ase.Atoms([first, second], positions=[[0, 0, 0], [d, 0, 0]]) for d in r]
    energies = _energies(model, configs, batch_size, device)
    binding = energies[2:] - energies[0] - energies[1]
    z_first, z_second = atomic_numbers[first], atomic_numbers[second]
    # The minimum is looked for no closer than the MD close-contact limit: a deeper minimum
    # further in is itself the hole.
    closest = MIN_DISTANCE_FRACTION * (covalent_radii[z_first] + covalent_radii[z_second])
    minimum = _minimum_index(binding, allowed=r >= closest)
    return DimerCurve(
        pair=pair_label(z_first, z_second),
        distances_a=r.tolist(),
        energies_ev=binding.tolist(),
        minimum_distance_a=float(r[minimum]),
        hole=_hole(r, binding, minimum, tolerance_ev),
    )


def compression_curve(
    model: torch.nn.Module,
    atoms: ase.Atoms,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    tolerance_ev: float = DEFAULT_TOLERANCE_EV,
    batch_size: int = 32,
    device: str = "cpu",
) -> CompressionCurve:
    """Energy per atom of `atoms` scaled uniformly down; it must rise below its minimum."""
    factors = np.sort(np.asarray(scales, dtype=float))
    configs = [_scaled(atoms, factor) for factor in factors]
    per_atom = _energies(model, configs, batch_size, device) / len(atoms)
    relative = per_atom - per_atom[-1]
    minimum = int(np.argmin(relative))
    return CompressionCurve(
        formula=atoms.get_chemical_formula(),
        scales=factors.tolist(),
        energies_ev_per_atom=relative.tolist(),
        minimum_scale=float(factors[minimum]),
        # The tolerance is for the whole structure; the curve is per atom.
        hole=_hole(factors, relative, minimum, tolerance_ev / len(atoms)),
    )


def _energies(
    model: torch.nn.Module, configs: list[ase.Atoms], batch_size: int, device: str
) -> np.ndarray:
    predictions = predict(model, configs, batch_size=batch_size, device=device, forces=False)
    return np.array([prediction.energy for prediction in predictions])


def _scaled(atoms: ase.Atoms, factor: float) -> ase.Atoms:
    scaled = ase.Atoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
    if atoms.pbc.any():
        scaled.set_cell(atoms.cell * factor, scale_atoms=True)
    else:
        centre = atoms.get_center_of_mass()
        scaled.positions = centre + factor * (atoms.positions - centre)
    return scaled


def _minimum_index(energies: np.ndarray, allowed: np.ndarray) -> int:
    candidates = np.flatnonzero(allowed) if allowed.any() else np.arange(len(energies))
    return int(candidates[np.argmin(energies[candidates])])


def _hole(x: np.ndarray, energies: np.ndarray, minimum: int, tolerance: float) -> Hole | None:
    """The first place inward of the minimum where the energy falls, or None if it only rises."""
    # Starting at 1 catches a curve lowest at its innermost point: no wall on the grid at all.
    for index in range(max(minimum, 1), 0, -1):
        if energies[index - 1] < energies[index] - tolerance:
            return Hole(
                below=float(x[index]),
                depth=float(energies[index] - energies[:index].min()),
            )
    return None
