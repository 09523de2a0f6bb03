"""Problems of a structure itself, whatever its labels: no atoms, not an element, positions that
are not finite, a cell that makes no sense along a periodic direction, overlapping atoms."""

from collections.abc import Callable

import ase
import numpy as np
from ase.data import chemical_symbols
from ase.neighborlist import neighbor_list

# Closer than this, two atoms are a duplicated or corrupted position, not chemistry; it is also
# the shortest periodic cell vector accepted, since an atom would overlap its own image.
MIN_DISTANCE = 0.1  # Å
# The overlap check on a molecule builds all n^2 distances; above this size it is skipped.
OVERLAP_CHECK_MAX_ATOMS = 500
# A molecule in a 400 Å vacuum box is 6.4e7 Å^3 per atom, beyond any DFT run; more than this
# means a Lattice in the wrong unit (pm) or a placeholder value.
MAX_VOLUME_PER_ATOM = 1e8  # Å^3
# Cell volume over the product of its vector lengths (1 for a cube); below this, it is flat.
MIN_VOLUME_FRACTION = 1e-6

_MAX_ATOMIC_NUMBER = len(chemical_symbols) - 1


def structure_problem(atoms: ase.Atoms) -> str | None:
    """The first problem of the structure itself; labels are checked by core.data.label_rules."""
    return next((problem for check in _STRUCTURE_CHECKS if (problem := check(atoms))), None)


def _element_problem(atoms: ase.Atoms) -> str | None:
    if len(atoms) == 0:
        return "contains no atoms"
    invalid = np.flatnonzero((atoms.numbers < 1) | (atoms.numbers > _MAX_ATOMIC_NUMBER))
    if invalid.size:
        index = invalid[0]
        return f"atom {index + 1} is not a chemical element (atomic number {atoms.numbers[index]})"
    return None


def _position_problem(atoms: ase.Atoms) -> str | None:
    invalid = np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))
    if invalid.size:
        return f"position of atom {invalid[0] + 1} is not finite: {atoms.positions[invalid[0]]}"
    return None


def _cell_problem(atoms: ase.Atoms) -> str | None:
    # mace replaces the cell along non-periodic directions, so only periodic ones must make sense.
    if not atoms.pbc.any():
        return None
    if not np.isfinite(atoms.cell.array).all():
        return "cell is not finite"
    lengths = atoms.cell.lengths()
    for axis in np.flatnonzero(atoms.pbc):
        if lengths[axis] < MIN_DISTANCE:
            return (
                f"cell vector {'abc'[axis]} is {lengths[axis]:.3g} Å long, but pbc is True along "
                "it; give a Lattice or set pbc False for that direction"
            )
    if not atoms.pbc.all():
        return None
    volume = atoms.cell.volume
    if volume < MIN_VOLUME_FRACTION * np.prod(lengths):
        return f"cell vectors are coplanar (volume {volume:.3g} Å^3) but pbc is True"
    if volume / len(atoms) > MAX_VOLUME_PER_ATOM:
        return (
            f"cell volume is {volume / len(atoms):.3g} Å^3 per atom, above "
            f"{MAX_VOLUME_PER_ATOM:.0e}; is the Lattice in Å?"
        )
    return None


def _overlap_problem(atoms: ase.Atoms) -> str | None:
    if not 2 <= len(atoms) <= OVERLAP_CHECK_MAX_ATOMS:
        return None
    pair = _overlapping_pair(atoms)
    if pair is None:
        return None
    first, second, distance = pair
    return f"atoms {first + 1} and {second + 1} are {distance:.3g} Å apart"


def _overlapping_pair(atoms: ase.Atoms) -> tuple[int, int, float] | None:
    """The closest pair nearer than MIN_DISTANCE, across periodic boundaries where pbc is True."""
    if atoms.pbc.any():
        # ASE's default binning scales with cell volume / cutoff^3, slow for vacuum boxes.
        first, second, distance = neighbor_list("ijd", atoms, MIN_DISTANCE, max_nbins=len(atoms))
    else:
        positions = atoms.positions
        first, second = np.triu_indices(len(atoms), k=1)
        distance = np.linalg.norm(positions[first] - positions[second], axis=1)
    if not distance.size or distance.min() >= MIN_DISTANCE:
        return None
    closest = int(np.argmin(distance))
    low, high = sorted((int(first[closest]), int(second[closest])))
    return low, high, float(distance[closest])


_STRUCTURE_CHECKS: tuple[Callable[[ase.Atoms], str | None], ...] = (
    _element_problem,
    _position_problem,
    _cell_problem,
    _overlap_problem,
)
