"""Forgetting (science.md §3): force RMSE on pretraining-like data, fine-tuned over foundation."""

import copy
import json
from pathlib import Path

import ase
import pytest
import torch

from core.data.demo_data import generate_foundation_configurations
from core.evaluation.forgetting import forgetting


@pytest.fixture(scope="module")
def foundation(demo_foundation: Path) -> torch.nn.Module:
    return torch.load(demo_foundation, weights_only=False)


@pytest.fixture(scope="module")
def drifted(foundation: torch.nn.Module) -> torch.nn.Module:
    """Stands in for a fine-tuned model: the foundation with its readouts changed by 20 %."""
    model = copy.deepcopy(foundation)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("readouts"):
                parameter.mul_(1.2)
    return model


@pytest.fixture(scope="module")
def replay() -> list[ase.Atoms]:
    """EMT-labelled, like the demo foundation's own training data: bulk, alloys, molecules."""
    return generate_foundation_configurations(8, seed=11)


def unlabelled(configs: list[ase.Atoms]) -> list[ase.Atoms]:
    return [
        ase.Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        for atoms in configs
    ]


def test_unchanged_model_has_forgetting_ratio_one(foundation, replay):
    result = forgetting(foundation, foundation, replay)

    assert result.reference == "dataset"
    assert result.foundation.forces_rmse_mev_per_a > 0  # EMT labels, not the model's
    assert result.forces_rmse_ratio == pytest.approx(1.0, rel=1e-9)


def test_model_moved_away_from_the_foundation_has_ratio_above_one(foundation, drifted, replay):
    result = forgetting(foundation, drifted, replay)

    assert result.forces_rmse_ratio > 1.0
    assert result.fine_tuned.forces_rmse_mev_per_a > result.foundation.forces_rmse_mev_per_a
    json.dumps(result.to_dict())


def test_unlabelled_replay_measures_distance_from_the_foundation(foundation, drifted, replay):
    structures = unlabelled(replay)

    unchanged = forgetting(foundation, foundation, structures)
    moved = forgetting(foundation, drifted, structures)

    assert unchanged.reference == moved.reference == "foundation"
    assert unchanged.foundation is None and unchanged.forces_rmse_ratio is None
    assert unchanged.fine_tuned.forces_rmse_mev_per_a == pytest.approx(0.0, abs=1e-9)
    assert moved.fine_tuned.forces_rmse_mev_per_a > 1.0
