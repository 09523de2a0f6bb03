"""Random crystals (PyXtal): the starting structures every compared model relaxes."""

import numpy as np
import pytest
from ase.data import covalent_radii

from core.data.random_crystals import random_crystals


def _fingerprint(crystal) -> tuple:
    atoms = crystal.atoms
    return (
        crystal.space_group,
        atoms.numbers.tolist(),
        atoms.cell.array.round(10).tolist(),
        atoms.positions.round(10).tolist(),
    )


def test_same_seed_gives_the_same_structures():
    first = random_crystals({"Na": 2, "Cl": 2}, 4, seed=7)
    again = random_crystals({"Cl": 2, "Na": 2}, 4, seed=7)

    assert [_fingerprint(c) for c in first] == [_fingerprint(c) for c in again]


def test_another_seed_gives_other_structures_and_the_first_do_not_depend_on_count():
    four = random_crystals({"Cu": 3, "Au": 1}, 4, seed=1)
    other = random_crystals({"Cu": 3, "Au": 1}, 4, seed=2)
    two = random_crystals({"Cu": 3, "Au": 1}, 2, seed=1)

    assert [_fingerprint(c) for c in four] != [_fingerprint(c) for c in other]
    assert [_fingerprint(c) for c in two] == [_fingerprint(c) for c in four[:2]]


def test_crystals_hold_the_composition_periodic_and_not_overlapping():
    crystals = random_crystals({"Cu": 2, "O": 2}, 3, seed=0)

    assert len(crystals) == 3
    for crystal in crystals:
        assert crystal.failure is None
        assert 1 <= crystal.space_group <= 230
        atoms = crystal.atoms
        assert atoms.get_chemical_formula() == "Cu2O2"
        assert atoms.pbc.all() and atoms.cell.volume > 0
        distances = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)]
        assert distances.min() > 0.5 * 2 * covalent_radii[8]


@pytest.mark.parametrize(
    ("composition", "message"),
    [({"Xx": 2}, "unknown element"), ({"X": 1}, "unknown element"), ({"Cu": 0}, "positive")],
)
def test_bad_compositions_are_failures_for_every_requested_structure(composition, message):
    crystals = random_crystals(composition, 3, seed=0)

    assert len(crystals) == 3
    assert all(c.atoms is None and message in c.failure for c in crystals)


@pytest.mark.parametrize(("count", "seed"), [(-1, 0), (1, -1)])
def test_negative_count_or_seed_is_refused(count, seed):
    with pytest.raises(ValueError, match="at least 0"):
        random_crystals({"Cu": 1}, count, seed=seed)
