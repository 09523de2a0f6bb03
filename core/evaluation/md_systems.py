"""The systems MD runs on: big enough to have a temperature (science.md §3, docs/md-stability.md).

A thermostat acts on the kinetic energy of many degrees of freedom; a 3-atom molecule has six
after its centre of mass and rotation are fixed, and its instantaneous temperature swings by
about ±60 %. So a structure with fewer than MIN_MD_ATOMS atoms is replicated before MD: a periodic
cell into a supercell, a molecule in vacuum into copies set apart on a grid (beyond the model's
cutoff, so they do not interact and the test stays one of the molecule). The copies are an
ensemble whose mean temperature the thermostat controls and the runaway criterion can judge.

A lone atom in vacuum has no forces and nothing to break: MD does not apply to it.
"""

import math
from dataclasses import dataclass

import ase
import numpy as np

# 32 atoms: the instantaneous temperature swings by about √(2 / 3N) ≈ 14 %, so a runaway stands out
# from the noise within tens of femtoseconds, and a supercell of a 1-4 atom crystal is 2×2×2.
MIN_MD_ATOMS = 32
# Å of empty space between copies of a molecule, beyond the model's cutoff: thermal motion in a
# run of a few picoseconds moves a molecule's centre by well under this.
COPY_GAP_BEYOND_CUTOFF = 4.0


@dataclass(frozen=True)
class MDSystem:
    """What MD runs on, built from one structure of the test set."""

    atoms: ase.Atoms
    structure: str  # the original's chemical formula
    n_original: int  # atoms in the original; frames of copies keep the first copy only
    replication: str | None  # "2×2×2 supercell", "11 copies 9.5 Å apart", None: as given
    copies_apart: bool  # molecule copies (frames for RDFs keep the first copy)

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)


class MDNotApplicable(ValueError):
    """The structure cannot be judged by MD; the message says why."""


def md_system(atoms: ase.Atoms, cutoff: float, min_atoms: int = MIN_MD_ATOMS) -> MDSystem:
    """`atoms` as is when big enough, else replicated to at least `min_atoms` atoms."""
    structure = atoms.get_chemical_formula()
    periodic = bool(atoms.pbc.any())
    if len(atoms) == 1 and not periodic:
        raise MDNotApplicable(
            f"{structure}: a lone atom in vacuum has no bonds and no forces to test"
        )
    plain = _without_labels(atoms)
    if len(atoms) >= min_atoms:
        return MDSystem(plain, structure, len(atoms), None, copies_apart=False)
    if periodic:
        repeats = supercell_repeats(atoms, min_atoms)
        label = "×".join(str(n) for n in repeats) + " supercell"
        return MDSystem(plain.repeat(repeats), structure, len(atoms), label, copies_apart=False)
    copies = math.ceil(min_atoms / len(atoms))
    replicated, spacing = copies_apart(plain, copies, cutoff + COPY_GAP_BEYOND_CUTOFF)
    label = f"{copies} copies {spacing:.3g} Å apart"
    return MDSystem(replicated, structure, len(atoms), label, copies_apart=True)


def supercell_repeats(atoms: ase.Atoms, min_atoms: int) -> tuple[int, int, int]:
    """Repeats along the periodic axes, the shortest axis first, until `min_atoms` is reached:
    the supercell stays as close to cubic as the cell allows."""
    repeats = [1, 1, 1]
    lengths = atoms.cell.lengths()
    periodic_axes = [axis for axis in range(3) if atoms.pbc[axis]]
    while len(atoms) * math.prod(repeats) < min_atoms:
        axis = min(periodic_axes, key=lambda a: lengths[a] * repeats[a])
        repeats[axis] += 1
    return repeats[0], repeats[1], repeats[2]


def copies_apart(atoms: ase.Atoms, copies: int, gap: float) -> tuple[ase.Atoms, float]:
    """`copies` of a molecule on a cubic grid, `gap` Å of vacuum between neighbours; returns the
    copies (non-periodic) and the spacing of their grid."""
    centred = atoms.positions - atoms.positions.mean(axis=0)
    extent = float(np.ptp(centred, axis=0).max()) if len(atoms) > 1 else 0.0
    spacing = extent + gap
    side = math.ceil(round(copies ** (1 / 3), 9))
    grid = [(i, j, k) for i in range(side) for j in range(side) for k in range(side)][:copies]
    positions = np.concatenate([centred + spacing * np.array(point) for point in grid])
    replicated = ase.Atoms(numbers=np.tile(atoms.numbers, copies), positions=positions, pbc=False)
    replicated.center(vacuum=gap)
    return replicated, spacing


def first_copy(frame: ase.Atoms, system: MDSystem) -> ase.Atoms:
    """A frame as the original structure: the first copy of a molecule, a supercell whole."""
    return frame[: system.n_original] if system.copies_apart else frame


def _without_labels(atoms: ase.Atoms) -> ase.Atoms:
    # The test set's energies and forces belong to the structure, not to what MD makes of it.
    return ase.Atoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
