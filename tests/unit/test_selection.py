import numpy as np
import pytest

from core.science.selection import (
    coverage,
    distinct_indices,
    farthest_point_indices,
    min_pairwise_distance,
)


def clustered(n_points: int, seed: int) -> np.ndarray:
    """Descriptors as pools usually are: dense clusters (many rattles of a few structures) and a
    few structures far from them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(6, 8))
    weights = np.array([0.5, 0.3, 0.1, 0.05, 0.03, 0.02])
    labels = rng.choice(len(centres), n_points, p=weights)
    return centres[labels] + rng.normal(scale=0.3, size=(n_points, 8))


def test_farthest_points_are_farther_apart_than_any_random_subset_of_the_same_size() -> None:
    descriptors = clustered(600, seed=1)

    picked = farthest_point_indices(descriptors, 30, seed=0)

    fps_spacing = min_pairwise_distance(descriptors[picked])
    rng = np.random.default_rng(2)
    for _ in range(20):
        subset = rng.choice(len(descriptors), 30, replace=False)
        assert fps_spacing > min_pairwise_distance(descriptors[subset])


def test_farthest_points_are_distinct_and_capped_at_the_pool() -> None:
    descriptors = clustered(50, seed=3)

    assert len(set(farthest_point_indices(descriptors, 20).tolist())) == 20
    assert sorted(farthest_point_indices(descriptors, 80).tolist()) == list(range(50))
    assert farthest_point_indices(descriptors[:0], 5).size == 0


def test_farthest_point_selection_is_reproducible_for_a_seed() -> None:
    descriptors = clustered(200, seed=4)

    first = farthest_point_indices(descriptors, 25, seed=7)

    assert np.array_equal(first, farthest_point_indices(descriptors, 25, seed=7))


def test_near_duplicates_are_removed_keeping_the_first_of_each() -> None:
    originals = clustered(40, seed=5)
    rng = np.random.default_rng(6)
    copies = originals[:15] + rng.normal(scale=1e-7, size=(15, 8))
    descriptors = np.concatenate([originals, originals[:10], copies])

    kept = distinct_indices(descriptors)

    assert kept.tolist() == list(range(40))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_duplicate_tolerance_follows_the_descriptors_scale(scale) -> None:
    descriptors = scale * clustered(100, seed=8)

    assert len(distinct_indices(descriptors)) == 100
    assert len(distinct_indices(np.concatenate([descriptors, descriptors]))) == 100


def test_coverage_is_zero_for_a_set_covering_itself_and_grows_for_far_structures() -> None:
    covering = clustered(100, seed=9)

    itself = coverage(covering[:10], covering)
    far = coverage(covering[:10] + 100.0, covering)

    assert itself.max == 0.0
    assert far.median_relative > 10 * max(itself.median_relative, 1e-9)
    assert far.to_dict()["n_structures"] == 10
