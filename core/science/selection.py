"""Choosing diverse structures in descriptor space: near-duplicate removal, farthest-point
sampling and how well one set covers another."""

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

# Two structures closer than this fraction of the pool's spread are one structure twice (a copy,
# or a displacement far below any thermal one).
DUPLICATE_FRACTION = 1e-3


def spread(descriptors: np.ndarray) -> float:
    """Root-mean-square distance of the descriptors from their centroid."""
    if len(descriptors) == 0:
        return 0.0
    centred = descriptors - descriptors.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))


def distinct_indices(descriptors: np.ndarray, tolerance: float | None = None) -> np.ndarray:
    """Indices of the descriptors kept after dropping near-duplicates; the first of each group of
    near-identical descriptors stays."""
    if len(descriptors) == 0:
        return np.zeros(0, dtype=int)
    if tolerance is None:
        tolerance = DUPLICATE_FRACTION * spread(descriptors)
    pairs = cKDTree(descriptors).query_pairs(tolerance, output_type="ndarray")
    dropped = np.zeros(len(descriptors), dtype=bool)
    # Pairs come as (i, j) with i < j; walking them by i keeps the earliest of every group.
    for first, second in sorted(map(tuple, pairs)):
        if not dropped[first]:
            dropped[second] = True
    return np.flatnonzero(~dropped)


def farthest_point_indices(descriptors: np.ndarray, count: int, *, seed: int = 0) -> np.ndarray:
    """Greedy farthest-point sampling: each pick is the descriptor farthest from all picked so
    far, starting from a seeded random one. Returns `count` indices (all when fewer exist)."""
    total = len(descriptors)
    count = min(count, total)
    if count <= 0:
        return np.zeros(0, dtype=int)
    picked = np.empty(count, dtype=int)
    picked[0] = int(np.random.default_rng(seed).integers(total))
    nearest = np.linalg.norm(descriptors - descriptors[picked[0]], axis=1)
    for step in range(1, count):
        picked[step] = int(np.argmax(nearest))
        distance = np.linalg.norm(descriptors - descriptors[picked[step]], axis=1)
        np.minimum(nearest, distance, out=nearest)
    return picked


def min_pairwise_distance(descriptors: np.ndarray) -> float:
    if len(descriptors) < 2:
        return float("inf")
    distances, _ = cKDTree(descriptors).query(descriptors, k=2)
    return float(distances[:, 1].min())


@dataclass(frozen=True)
class Coverage:
    """Distance from each of a set of structures to its nearest neighbour in another set."""

    n_structures: int
    mean: float
    median: float
    max: float
    # The same distances in units of the covering set's own typical nearest-neighbour spacing:
    # about 1 means the structures sit among the set, far above 1 that the set misses them.
    median_relative: float
    max_relative: float

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def coverage(covered: np.ndarray, covering: np.ndarray) -> Coverage:
    distances, _ = cKDTree(covering).query(covered, k=1)
    if len(covering) > 1:
        spacing, _ = cKDTree(covering).query(covering, k=2)
        typical = float(np.median(spacing[:, 1]))
    else:
        typical = 0.0
    median = float(np.median(distances))
    largest = float(distances.max())
    return Coverage(
        n_structures=len(covered),
        mean=float(distances.mean()),
        median=median,
        max=largest,
        median_relative=median / typical if typical > 0 else float("inf"),
        max_relative=largest / typical if typical > 0 else float("inf"),
    )
