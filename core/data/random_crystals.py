"""Random crystals with PyXtal: symmetry-constrained starting points for structure search.

Used by the random-structure-search hole test (core.evaluation.rss) and for replay sets. Every
structure has its own random stream, derived from the seed, the composition and its index, so
the same inputs give the same structures in any process and the first n structures do not
depend on how many were asked for.
"""

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import ase
import numpy as np
from ase.data import atomic_numbers

# Space groups tried at random before falling back to P1, which fits any composition.
GROUP_ATTEMPTS = 3
# PyXtal's own retries per space group before it gives up on a placement.
PLACEMENT_ATTEMPTS = 10


@dataclass(frozen=True)
class RandomCrystal:
    """One requested structure: the crystal, or why PyXtal could not make it."""

    atoms: ase.Atoms | None
    space_group: int | None
    failure: str | None = None


def random_crystals(composition: Mapping[str, int], count: int, seed: int) -> list[RandomCrystal]:
    """`count` random crystals holding exactly `composition` (atoms per cell), one entry each.

    A structure that cannot be made is kept as an entry with `failure` set, never dropped.
    """
    if count < 0 or seed < 0:
        raise ValueError(f"count and seed must be at least 0, got {count} and {seed}")
    problem = composition_problem(composition)
    if problem is not None:
        return [RandomCrystal(None, None, problem) for _ in range(count)]
    species = sorted(composition, key=lambda symbol: atomic_numbers[symbol])
    counts = [int(composition[symbol]) for symbol in species]
    groups = compatible_space_groups(tuple(sorted(counts)))
    return [
        _one_crystal(species, counts, groups, _stream(seed, species, counts, index))
        for index in range(count)
    ]


def composition_problem(composition: Mapping[str, int]) -> str | None:
    """Why a composition cannot be placed in a cell, or None."""
    if not composition:
        return "empty composition"
    # ASE's "X" is a dummy atom (Z = 0), not an element.
    unknown = sorted(s for s in composition if atomic_numbers.get(s, 0) == 0)
    if unknown:
        return f"unknown element(s) {', '.join(unknown)}"
    bad = sorted(symbol for symbol, n in composition.items() if int(n) != n or n < 1)
    if bad:
        return f"atom counts must be positive integers: {', '.join(bad)}"
    return None


@lru_cache(maxsize=256)
def compatible_space_groups(counts: tuple[int, ...]) -> tuple[int, ...]:
    """Space groups above P1 whose Wyckoff positions can hold these atom counts."""
    from pyxtal.symmetry import Group

    return tuple(
        number for number in range(2, 231) if Group(number).check_compatible(list(counts))[0]
    )


def _stream(seed: int, species: list[str], counts: list[int], index: int) -> np.random.Generator:
    # Python's hash() is salted per process; a digest keeps streams equal across workers.
    label = ",".join(f"{s}{n}" for s, n in zip(species, counts, strict=True))
    digest = int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, index])


def _one_crystal(
    species: list[str], counts: list[int], groups: tuple[int, ...], rng: np.random.Generator
) -> RandomCrystal:
    tries = [int(g) for g in rng.choice(groups, min(GROUP_ATTEMPTS, len(groups)), replace=False)]
    errors: list[str] = []
    for group in [*tries, 1]:
        try:
            atoms = _place(species, counts, group, rng)
        except Exception as error:  # PyXtal raises RuntimeError, ValueError, TypeError, ...
            errors.append(f"space group {group}: {type(error).__name__}: {error}")
            continue
        return RandomCrystal(atoms, group)
    return RandomCrystal(None, None, "PyXtal could not place the atoms; " + "; ".join(errors))


def _place(
    species: list[str], counts: list[int], group: int, rng: np.random.Generator
) -> ase.Atoms:
    from pyxtal import pyxtal

    crystal = pyxtal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crystal.from_random(
            3, group, species, counts, max_count=PLACEMENT_ATTEMPTS, random_state=rng
        )
    if not crystal.valid:
        raise RuntimeError("no valid placement")
    atoms = crystal.to_ase()
    return ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
