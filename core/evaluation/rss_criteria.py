"""The study's four hole criteria (arXiv 2606.12704, Appendix A.5) as pure functions: a relaxed
structure is a hole if any one holds, judged against the medians of its group (one composition at
one pressure, every structure relaxed by the same model)."""

from collections.abc import Sequence
from dataclasses import dataclass

import ase
import numpy as np
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

CRITERIA = ("min_distance", "collapsed_volume", "low_energy", "compressed_low_energy")


@dataclass(frozen=True)
class HoleCriteria:
    """The study's four criteria; each threshold is a parameter."""

    min_distance_fraction: float = 0.5  # of the sum of covalent radii
    collapsed_volume_fraction: float = 0.3  # of the median volume per atom
    energy_mad_multiple: float = 10.0
    energy_floor_ev_per_atom: float = 5.0  # the energy threshold is never closer to the median
    compressed_volume_fraction: float = 0.5  # together with an energy below the median


def min_distance_ratio(atoms: ase.Atoms) -> float | None:
    """Closest pair (periodic images included) over the sum of its covalent radii; None when no
    pair is closer than that sum."""
    if len(atoms) == 0:
        return None
    if atoms.pbc.any() and abs(atoms.cell.volume) / len(atoms) < 1e-3:
        return 0.0
    radii = covalent_radii[atoms.numbers]
    first, second, distance = neighbor_list("ijd", atoms, 2.0 * float(radii.max()))
    if len(distance) == 0:
        return None
    ratios = distance / (radii[first] + radii[second])
    smallest = float(ratios.min())
    return smallest if smallest < 1.0 else None


def too_close(ratio: float | None, criteria: HoleCriteria) -> bool:
    return ratio is not None and ratio < criteria.min_distance_fraction


def collapsed_volume(volume: float, median_volume: float, criteria: HoleCriteria) -> bool:
    return volume < criteria.collapsed_volume_fraction * median_volume


def energy_threshold(median_energy: float, mad: float, criteria: HoleCriteria) -> float:
    """Energies per atom below this are holes: 10 MADs below the median, at least 5 eV/atom."""
    return median_energy - max(
        criteria.energy_mad_multiple * mad, criteria.energy_floor_ev_per_atom
    )


def compressed_low_energy(
    volume: float, median_volume: float, energy: float, median_energy: float, criteria: HoleCriteria
) -> bool:
    return volume < criteria.compressed_volume_fraction * median_volume and energy < median_energy


def flag_holes(
    energies_per_atom: Sequence[float],
    volumes_per_atom: Sequence[float],
    distance_ratios: Sequence[float | None],
    criteria: HoleCriteria = HoleCriteria(),
) -> list[list[str]]:
    """The criteria each structure meets, against the medians of this group (one composition at
    one pressure, every structure relaxed by the same model)."""
    energies = np.asarray(energies_per_atom, dtype=float)
    volumes = np.asarray(volumes_per_atom, dtype=float)
    if len(energies) == 0:
        return []
    median_energy = float(np.median(energies))
    mad = float(np.median(np.abs(energies - median_energy)))
    median_volume = float(np.median(volumes))
    threshold = energy_threshold(median_energy, mad, criteria)
    flags = []
    for energy, volume, ratio in zip(energies, volumes, distance_ratios, strict=True):
        met = {
            "min_distance": too_close(ratio, criteria),
            "collapsed_volume": collapsed_volume(volume, median_volume, criteria),
            "low_energy": bool(energy < threshold),
            "compressed_low_energy": compressed_low_energy(
                volume, median_volume, energy, median_energy, criteria
            ),
        }
        flags.append([name for name in CRITERIA if met[name]])
    return flags
