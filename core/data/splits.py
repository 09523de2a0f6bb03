"""Honest train/validation/test splits: duplicates removed, groups kept together, recorded.

Configurations of one MD trajectory (or one `config_type`) are strongly correlated; split across
train and validation they make the validation error optimistic. With `group_by`, every group goes
to exactly one side. The split is returned as indices into the training dataset's configurations,
so a job can store which configuration went where.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import ase
import numpy as np

from core.errors import InvalidSpecError

# Positions equal to this many decimals (Å) are the same structure written twice.
EXACT_DECIMALS = 6
# Sorted interatomic distances all within this (Å): the same structure, barely moved.
NEAR_DUPLICATE_TOLERANCE = 0.01
# Fingerprints hold every pair distance, so only structures up to this size are compared.
NEAR_DUPLICATE_MAX_ATOMS = 200


@dataclass(frozen=True)
class Split:
    """Indices into the configurations the split was made from."""

    train: list[int]
    valid: list[int]
    test: list[int]
    duplicates_removed: list[int]
    group_by: str | None
    seed: int

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "counts": {
                "train": len(self.train),
                "valid": len(self.valid),
                "test": len(self.test),
                "duplicates_removed": len(self.duplicates_removed),
            },
        }


def structure_key(atoms: ase.Atoms) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(atoms.numbers).tobytes())
    # + 0.0 turns -0.0 into 0.0, so rounding noise around zero does not split a duplicate.
    digest.update(np.round(atoms.positions, EXACT_DECIMALS).tobytes() + b"|")
    digest.update((np.round(atoms.cell.array, EXACT_DECIMALS) + 0.0).tobytes())
    digest.update(np.ascontiguousarray(atoms.pbc).tobytes())
    return digest.hexdigest()


def exact_duplicate_groups(configs: Sequence[ase.Atoms]) -> list[list[int]]:
    """Groups (of two or more indices, first occurrence first) of identical structures."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, atoms in enumerate(configs):
        groups[structure_key(_normalised(atoms))].append(index)
    return [group for group in groups.values() if len(group) > 1]


def distance_fingerprint(atoms: ase.Atoms) -> np.ndarray:
    """Sorted interatomic distances (minimum image for periodic cells): invariant to rotation,
    translation and atom order."""
    distances = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    upper = distances[np.triu_indices(len(atoms), k=1)]
    return np.sort(upper)


def near_duplicate_groups(
    configs: Sequence[ase.Atoms], tolerance: float = NEAR_DUPLICATE_TOLERANCE
) -> list[list[int]]:
    """Groups of structures with the same composition whose sorted distances all agree within
    `tolerance`, exact duplicates excluded (they are reported on their own)."""
    exact = {index for group in exact_duplicate_groups(configs) for index in group[1:]}
    by_composition: dict[str, list[int]] = defaultdict(list)
    for index, atoms in enumerate(configs):
        if index not in exact and 1 < len(atoms) <= NEAR_DUPLICATE_MAX_ATOMS:
            by_composition[atoms.get_chemical_formula()].append(index)
    groups = []
    for indices in by_composition.values():
        if len(indices) < 2:
            continue
        groups += _close_fingerprints(
            indices, np.array([distance_fingerprint(configs[i]) for i in indices]), tolerance
        )
    return sorted(groups)


def _close_fingerprints(
    indices: list[int], fingerprints: np.ndarray, tolerance: float
) -> list[list[int]]:
    # Two fingerprints within `tolerance` everywhere have sums within m·tolerance, so after
    # sorting by the sum only a window of neighbours needs comparing (large datasets stay fast).
    sums = fingerprints.sum(axis=1)
    order = np.argsort(sums, kind="stable")
    window = tolerance * fingerprints.shape[1]
    assigned: set[int] = set()
    groups = []
    for rank, position in enumerate(order):
        if position in assigned:
            continue
        end = int(np.searchsorted(sums[order], sums[position] + window, side="right"))
        candidates = [int(p) for p in order[rank + 1 : end] if int(p) not in assigned]
        close = [
            p
            for p in candidates
            if np.abs(fingerprints[p] - fingerprints[position]).max() <= tolerance
        ]
        if close:
            assigned.update(close)
            groups.append(sorted(indices[p] for p in [int(position), *close]))
    return groups


def group_labels(configs: Sequence[ase.Atoms], group_by: str | None) -> list[str]:
    """The group of each configuration: its `atoms.info[group_by]`, or its own index when it has
    none (then it moves alone)."""
    if group_by is None:
        return [f"#{index}" for index in range(len(configs))]
    return [
        str(atoms.info[group_by]) if group_by in atoms.info else f"#{index}"
        for index, atoms in enumerate(configs)
    ]


def split_configurations(
    configs: Sequence[ase.Atoms],
    *,
    valid_fraction: float,
    test_fraction: float = 0.0,
    group_by: str | None = None,
    deduplicate: bool = True,
    seed: int = 123,
) -> Split:
    """Seeded split; whole groups go to test first, then validation, until each has at least its
    fraction of the configurations. `valid_fraction` 0 keeps validation empty (a separate
    validation set)."""
    removed = (
        sorted(i for group in exact_duplicate_groups(configs) for i in group[1:])
        if deduplicate
        else []
    )
    kept = [index for index in range(len(configs)) if index not in set(removed)]
    labels = group_labels(configs, group_by)
    members: dict[str, list[int]] = defaultdict(list)
    for index in kept:
        members[labels[index]].append(index)
    names = sorted(members)
    wanted_sides = (test_fraction > 0) + (valid_fraction > 0) + 1
    if group_by is not None and len(names) < wanted_sides:
        raise InvalidSpecError(
            f"split.group_by={group_by!r} finds {len(names)} group(s) in the training data, too "
            f"few to keep groups apart across {wanted_sides} sets; group by another key or drop "
            "group_by"
        )
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    sides: dict[str, list[int]] = {"test": [], "valid": [], "train": []}
    targets = {"test": test_fraction * len(kept), "valid": valid_fraction * len(kept)}
    for name in order:
        side = next(
            (s for s in ("test", "valid") if targets[s] > 0 and len(sides[s]) < targets[s]),
            "train",
        )
        sides[side] += members[name]
    if not sides["train"]:
        raise InvalidSpecError("the split left no configuration for training; lower the fractions")
    return Split(
        train=sorted(sides["train"]),
        valid=sorted(sides["valid"]),
        test=sorted(sides["test"]),
        duplicates_removed=removed,
        group_by=group_by,
        seed=seed,
    )


def _normalised(atoms: ase.Atoms) -> ase.Atoms:
    # Atom order does not make a different structure.
    order = np.lexsort((*np.round(atoms.positions, EXACT_DECIMALS).T[::-1], atoms.numbers))
    return atoms[order]
