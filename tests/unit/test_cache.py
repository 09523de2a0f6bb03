"""Shared foundation predictions: computed once, and recomputed when any input changes."""

import numpy as np
from ase.build import molecule

from core.science.cache import PredictionCache


def test_a_second_request_is_served_from_the_cache_and_changed_inputs_miss(tmp_path) -> None:
    cache = PredictionCache(tmp_path)
    configs = [molecule("H2O"), molecule("CH4")]
    calls: list[int] = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.array([1.0, 2.0]) * len(calls)

    first = cache.energies("sha-a", configs, compute)
    again = cache.energies("sha-a", configs, compute)
    other_foundation = cache.energies("sha-b", configs, compute)
    moved = [atoms.copy() for atoms in configs]
    moved[1].positions[0, 0] += 1e-6
    other_positions = cache.energies("sha-a", moved, compute)

    assert np.array_equal(first, again)
    assert len(calls) == 3
    assert not np.array_equal(other_foundation, first)
    assert not np.array_equal(other_positions, first)
