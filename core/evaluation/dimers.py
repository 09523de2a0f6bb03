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
import spglib
import torch
from ase.data import atomic_numbers, covalent_radii
from ase.geometry import find_mic

from core.evaluation.md_criteria import MIN_DISTANCE_FRACTION
from core.evaluation.rdf import pair_label
from core.registry import mace_model
from core.science.inference import Neighbourhood, neighbourhood, predict

DEFAULT_DISTANCES = tuple(np.round(np.arange(0.5, 5.0 + 1e-9, 0.05), 3))  # Å
DEFAULT_SCALES = tuple(np.round(np.arange(0.5, 1.0 + 1e-9, 0.025), 3))  # of cell and positions
# Smaller falls are numerical flatness, not a hole.
DEFAULT_TOLERANCE_EV = 1e-3
# A compression curve is measured on at most this many atoms: a periodic cell is replaced by its
# primitive cell when it has one, any other structure by the atoms nearest its centre, as a
# cluster in vacuum. The repulsive wall is a property of close pairs, not of the cell's size, and
# a 108-atom cell compressed to half its size with r_max 6 Å has 600 neighbours per atom: tens of
# GB of activations at MACE-MP-0 size.
COMPRESSION_MAX_ATOMS = 16
# Compression stops (the curve ends at the last scale below this) once atoms have more
# neighbours on average than this within the model's r_max; an uncompressed fcc metal has about
# 80 at r_max 6 Å, so the wall at 0.7x and below is still on the curve.
MAX_MEAN_NEIGHBOURS = 300
# Atoms within this of their ideal sites count as the crystal when looking for a primitive cell.
SYMMETRY_TOLERANCE_A = 0.1


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
    # The scale below which compression stopped (neighbour count above MAX_MEAN_NEIGHBOURS).
    stopped_below: float | None = None
    n_atoms: int | None = None  # of the structure compressed (see compression_structure)

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
    batch_size: int | None = None,
    device: str = "cpu",
    max_atoms: int = COMPRESSION_MAX_ATOMS,
    max_mean_neighbours: float = MAX_MEAN_NEIGHBOURS,
) -> CompressionCurve:
    """Energy per atom of `atoms` (at most `max_atoms` of them, see compression_structure)
    scaled uniformly down; it must rise below its minimum. Scales whose mean neighbour count
    exceeds `max_mean_neighbours` are left out."""
    small = compression_structure(atoms, max_atoms)
    factors = np.sort(np.asarray(scales, dtype=float))[::-1]
    cutoff = mace_model.cutoff(model)
    configs: list[ase.Atoms] = []
    graphs: list[Neighbourhood] = []
    for factor in factors:
        scaled = _scaled(small, factor)
        graph = neighbourhood(scaled, cutoff)
        if configs and graph.n_edges / len(scaled) > max_mean_neighbours:
            break
        configs.append(scaled)
        graphs.append(graph)
    stopped_below = float(factors[len(configs) - 1]) if len(configs) < len(factors) else None
    kept = factors[: len(configs)][::-1]
    predictions = predict(
        model,
        configs[::-1],
        batch_size=batch_size,
        device=device,
        forces=False,
        neighbourhoods=graphs[::-1],
    )
    per_atom = np.array([p.energy for p in predictions]) / len(small)
    relative = per_atom - per_atom[-1]
    minimum = int(np.argmin(relative))
    return CompressionCurve(
        formula=atoms.get_chemical_formula(),
        scales=kept.tolist(),
        energies_ev_per_atom=relative.tolist(),
        minimum_scale=float(kept[minimum]),
        # The tolerance is for the whole structure; the curve is per atom.
        hole=_hole(kept, relative, minimum, tolerance_ev / len(small)),
        stopped_below=stopped_below,
        n_atoms=len(small),
    )


def compression_structure(atoms: ase.Atoms, max_atoms: int = COMPRESSION_MAX_ATOMS) -> ase.Atoms:
    """`atoms` when small enough; else a periodic cell's primitive cell (spglib, atoms within
    SYMMETRY_TOLERANCE_A of a crystal), else the `max_atoms` atoms nearest the centre as a
    cluster in vacuum."""
    plain = ase.Atoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
    if len(plain) <= max_atoms:
        return plain
    if plain.pbc.all():
        primitive = _primitive_cell(plain)
        if primitive is not None and len(primitive) <= max_atoms:
            return primitive
    return _central_cluster(plain, max_atoms)


def _primitive_cell(atoms: ase.Atoms) -> ase.Atoms | None:
    found = spglib.standardize_cell(
        (atoms.cell.tolist(), atoms.get_scaled_positions().tolist(), atoms.numbers.tolist()),
        to_primitive=True,
        symprec=SYMMETRY_TOLERANCE_A,
    )
    if found is None:
        return None
    cell, scaled_positions, numbers = found
    return ase.Atoms(numbers=numbers, scaled_positions=scaled_positions, cell=cell, pbc=True)


def _central_cluster(atoms: ase.Atoms, count: int) -> ase.Atoms:
    if atoms.pbc.any():
        # Minimum-image vectors from the cell's centre: the cluster is compact across its faces.
        offsets, _ = find_mic(atoms.positions - atoms.cell.sum(axis=0) / 2, atoms.cell, atoms.pbc)
    else:
        centre = atoms.get_center_of_mass()
        offsets = atoms.positions - centre
    nearest = np.argsort(np.linalg.norm(offsets, axis=1), kind="stable")[:count]
    return ase.Atoms(numbers=atoms.numbers[nearest], positions=offsets[nearest], pbc=False)


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
