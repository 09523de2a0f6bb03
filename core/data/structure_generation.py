"""Candidate structures around a user's own configurations, built with ASE's builders.

Replay data need structural diversity more than a particular origin (science.md §1), so each
source perturbs the user's configurations (or reference crystals of their elements) in one way:
rattled at several amplitudes, strained, repeated, with a vacancy, cut into slabs, and dimers of
every element pair over a range of distances. Every source draws from its own seeded random
stream, so a candidate set depends only on the inputs and the seed.
"""

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ase
import numpy as np
from ase.build import bulk, surface
from ase.data import atomic_numbers, covalent_radii, reference_states

GENERATED_SOURCES = ("rattle", "strain", "supercell", "vacancy", "surface", "dimer")
RATTLE_AMPLITUDES = (0.02, 0.05, 0.1, 0.2)  # Å, standard deviation per coordinate
MAX_STRAIN = 0.04  # ±4 % normal strain
MAX_SHEAR = 0.03
SUPERCELLS = ((2, 1, 1), (1, 2, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2))
MILLER_INDICES = ((1, 0, 0), (1, 1, 0), (1, 1, 1))
SLAB_VACUUM = 8.0  # Å on each side, beyond the cutoff of any MACE foundation
MOLECULE_VACUUM = 6.0
# Dimers from 0.6 × the sum of covalent radii (the repulsive wall) out to near the cutoff.
DIMER_SHORTEST = 0.6
# Generated structures stay small enough for a CPU foundation to label thousands of them.
MAX_ATOMS = 64
_CRYSTAL_STRUCTURES = {"fcc", "bcc", "hcp", "diamond", "sc"}


@dataclass(frozen=True)
class Candidate:
    atoms: ase.Atoms
    source: str


def seed_structures(configs: Sequence[ase.Atoms], elements: Sequence[str]) -> list[ase.Atoms]:
    """What the perturbing sources start from: the user's multi-atom configurations made only of
    `elements`, or, without any, the reference crystal of each element that has one."""
    allowed = set(elements)
    own = [
        bare(atoms)
        for atoms in configs
        if len(atoms) > 1 and set(atoms.get_chemical_symbols()) <= allowed
    ]
    if own:
        return own
    return [crystal for symbol in elements if (crystal := reference_crystal(symbol)) is not None]


def reference_crystal(symbol: str) -> ase.Atoms | None:
    state = reference_states[atomic_numbers[symbol]]
    if state is None or state.get("symmetry") not in _CRYSTAL_STRUCTURES:
        return None
    return bulk(symbol)


def generate(
    source: str,
    seeds: Sequence[ase.Atoms],
    elements: Sequence[str],
    count: int,
    rng: np.random.Generator,
    *,
    cutoff: float,
) -> list[Candidate]:
    """Up to `count` candidates of one source; fewer only when the source has nothing to work on
    (no periodic seed for strain, supercells and slabs; no element for dimers)."""
    if source == "dimer":
        return [Candidate(atoms, source) for atoms in dimers(elements, count, cutoff)]
    make = _PERTURBATIONS[source]
    usable = [atoms for atoms in seeds if _applies(source, atoms)]
    if not usable or count <= 0:
        return []
    made: list[Candidate] = []
    for atoms in itertools.islice(itertools.cycle(usable), 50 * count):
        structure = make(atoms, rng)
        if structure is not None and len(structure) <= MAX_ATOMS:
            made.append(Candidate(structure, source))
        if len(made) == count:
            break
    return made


def dimers(elements: Sequence[str], count: int, cutoff: float) -> list[ase.Atoms]:
    """`count` pairs spread over every element combination (the first combinations get one more
    when they do not divide evenly), evenly spaced from the repulsive wall to near `cutoff`."""
    pairs = list(itertools.combinations_with_replacement(sorted(elements), 2))
    if not pairs or count <= 0:
        return []
    structures = []
    for index, (first, second) in enumerate(pairs):
        points = count // len(pairs) + (index < count % len(pairs))
        bond = covalent_radii[atomic_numbers[first]] + covalent_radii[atomic_numbers[second]]
        # Beyond the cutoff a pair is two isolated atoms: one structure, however far apart.
        longest = max(0.95 * cutoff, 1.5 * bond)
        for distance in np.linspace(DIMER_SHORTEST * bond, longest, points):
            atoms = ase.Atoms([first, second], positions=[[0, 0, 0], [0, 0, distance]])
            atoms.center(vacuum=MOLECULE_VACUUM)
            structures.append(atoms)
    return structures


def _applies(source: str, atoms: ase.Atoms) -> bool:
    if source in ("strain", "supercell", "surface"):
        return bool(atoms.pbc.all())
    if source == "vacancy":
        return len(atoms) >= 3
    return True


def _rattled(atoms: ase.Atoms, rng: np.random.Generator) -> ase.Atoms:
    amplitude = RATTLE_AMPLITUDES[int(rng.integers(len(RATTLE_AMPLITUDES)))]
    return _rattle(atoms.copy(), amplitude, rng)


def _strained(atoms: ase.Atoms, rng: np.random.Generator) -> ase.Atoms:
    normal = np.diag(rng.uniform(-MAX_STRAIN, MAX_STRAIN, 3))
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR, (3, 3))
    shear = (shear + shear.T) / 2 - np.diag(np.diag(shear))
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ (np.eye(3) + normal + shear), scale_atoms=True)
    return _rattle(strained, RATTLE_AMPLITUDES[0], rng)


def _supercell(atoms: ase.Atoms, rng: np.random.Generator) -> ase.Atoms:
    repeat = SUPERCELLS[int(rng.integers(len(SUPERCELLS)))]
    return _rattle(atoms.repeat(repeat), RATTLE_AMPLITUDES[1], rng)


def _vacancy(atoms: ase.Atoms, rng: np.random.Generator) -> ase.Atoms:
    # A cell of two atoms loses half its content with one vacancy; repeat small cells first.
    host = atoms.repeat((2, 1, 1)) if atoms.pbc.all() and len(atoms) < 4 else atoms.copy()
    del host[int(rng.integers(len(host)))]
    return _rattle(host, RATTLE_AMPLITUDES[1], rng)


def _slab(atoms: ase.Atoms, rng: np.random.Generator) -> ase.Atoms | None:
    miller = MILLER_INDICES[int(rng.integers(len(MILLER_INDICES)))]
    try:
        slab = surface(atoms, miller, layers=int(rng.integers(2, 4)), vacuum=SLAB_VACUUM)
    except (ValueError, np.linalg.LinAlgError):
        return None  # ASE cannot cut this lattice along these indices
    slab.pbc = (True, True, False)
    return _rattle(slab, RATTLE_AMPLITUDES[1], rng)


_PERTURBATIONS: dict[str, Callable[[ase.Atoms, np.random.Generator], ase.Atoms | None]] = {
    "rattle": _rattled,
    "strain": _strained,
    "supercell": _supercell,
    "vacancy": _vacancy,
    "surface": _slab,
}


def _rattle(atoms: ase.Atoms, amplitude: float, rng: np.random.Generator) -> ase.Atoms:
    atoms.positions += rng.normal(scale=amplitude, size=atoms.positions.shape)
    return atoms


def bare(atoms: ase.Atoms) -> ase.Atoms:
    return ase.Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
