"""Honest splits: groups never cross sides, exact duplicates leave, the split is reproducible."""

import numpy as np
import pytest
from ase import Atoms

from core.data.splits import exact_duplicate_groups, split_configurations
from core.errors import InvalidSpecError


def trajectories(n_groups: int, per_group: int, key: str = "config_type") -> list[Atoms]:
    rng = np.random.default_rng(0)
    configs = []
    for group in range(n_groups):
        for _ in range(per_group):
            atoms = Atoms("H2O", positions=rng.normal(scale=1.0, size=(3, 3)))
            atoms.info[key] = f"traj-{group}"
            configs.append(atoms)
    return configs


def test_config_type_groups_are_never_split_across_train_valid_and_test() -> None:
    configs = trajectories(10, 7)

    split = split_configurations(
        configs, valid_fraction=0.2, test_fraction=0.2, group_by="config_type", seed=1
    )

    sides = {}
    for side in ("train", "valid", "test"):
        for index in getattr(split, side):
            sides.setdefault(configs[index].info["config_type"], set()).add(side)
    assert all(len(found) == 1 for found in sides.values())
    assert split.valid and split.test and split.train
    assert sorted(split.train + split.valid + split.test) == list(range(len(configs)))
    assert len(split.test) >= 0.2 * len(configs)


def test_a_trajectory_key_groups_like_config_type() -> None:
    configs = trajectories(6, 5, key="trajectory")

    split = split_configurations(configs, valid_fraction=0.3, group_by="trajectory", seed=2)

    valid_groups = {configs[i].info["trajectory"] for i in split.valid}
    train_groups = {configs[i].info["trajectory"] for i in split.train}
    assert valid_groups and not valid_groups & train_groups


def test_exact_duplicates_are_removed_and_recorded() -> None:
    configs = trajectories(1, 10)
    configs.append(configs[3].copy())
    configs.append(configs[5][[1, 2, 0]])

    split = split_configurations(configs, valid_fraction=0.2, seed=0)

    assert exact_duplicate_groups(configs) == [[3, 10], [5, 11]]
    assert split.duplicates_removed == [10, 11]
    assert 10 not in split.train + split.valid
    assert split.to_dict()["counts"]["duplicates_removed"] == 2


def test_the_split_is_reproducible_with_its_seed() -> None:
    configs = trajectories(1, 30)

    first = split_configurations(configs, valid_fraction=0.1, seed=5)
    again = split_configurations(configs, valid_fraction=0.1, seed=5)
    other = split_configurations(configs, valid_fraction=0.1, seed=6)

    assert first == again
    assert first.valid != other.valid
    assert len(first.valid) == 3


def test_grouping_by_a_key_with_a_single_group_is_refused() -> None:
    with pytest.raises(InvalidSpecError, match="1 group"):
        split_configurations(trajectories(1, 10), valid_fraction=0.1, group_by="config_type")
