"""MD stability (science.md §3): a sound model survives short runs; broken ones are caught."""

import copy
import json
from pathlib import Path

import ase
import numpy as np
import pytest
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.morse import MorsePotential

from core.data.demo_data import generate_target_dataset
from core.evaluation.md import MDRunSpec, MDSettings, md_stability, run_md
from core.evaluation.rdf import radial_distribution

SHORT_CONSTANT = MDRunSpec("constant", 100.0, 100.0, 40)
SHORT_RAMP = MDRunSpec("ramp", 50.0, 800.0, 40)


@pytest.fixture(scope="module")
def foundation(demo_foundation: Path) -> torch.nn.Module:
    return torch.load(demo_foundation, weights_only=False)


def with_scaled_readouts(model: torch.nn.Module, factor: float) -> torch.nn.Module:
    broken = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in broken.named_parameters():
            if name.startswith("readouts"):
                parameter.mul_(factor)
    return broken


class NaNForces(Calculator):
    """Finite energy, NaN forces: what a model returns once its inputs are out of range."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.full((len(atoms), 3), np.nan)}


def test_demo_foundation_keeps_an_alloy_cell_stable_through_both_runs(foundation):
    cell = generate_target_dataset(2, seed=3)[1]
    reports: list[tuple[float, str]] = []

    result = md_stability(
        foundation,
        cell,
        runs=(SHORT_CONSTANT, SHORT_RAMP),
        on_progress=lambda fraction, message: reports.append((fraction, message)),
    )

    assert result.stable
    for run in result.runs:
        assert run.failure_reason is None
        assert run.steps_completed == 40
        assert run.time_survived_ps == pytest.approx(run.total_time_ps) == pytest.approx(0.02)
        assert len(run.frames) == 4  # every 10 steps
        assert run.min_distance_ratio > 0.5
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert json.loads(json.dumps(result.to_dict()))["runs"][1]["n_frames"] == 4
    assert set(radial_distribution(result.runs[0].frames).pairs) == {"Au-Au", "Au-Cu", "Cu-Cu"}


def test_model_with_inflated_readouts_is_stopped_at_the_blow_up(foundation):
    molecule = generate_target_dataset(7, seed=3, system="molecules")[6]  # CH3OH

    run = run_md(with_scaled_readouts(foundation, -3.0), molecule, SHORT_CONSTANT)

    assert not run.stable
    assert run.failure_reason in {"energy_drift", "close_contact", "not_finite"}
    assert run.steps_completed < SHORT_CONSTANT.n_steps
    assert run.time_survived_ps < run.total_time_ps
    assert run.failure_detail.startswith(f"step {run.steps_completed + 1}:")


def test_atoms_pulled_together_fail_as_close_contact():
    # A Morse well at 0.2 Å pulls H2 (0.74 Å) below half the H-H covalent distance (0.31 Å);
    # its cutoffs are in units of r0, so they are raised to reach the molecule at all.
    hydrogen = ase.Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    collapsing = MorsePotential(epsilon=2.0, r0=0.2, rho0=0.4, rcut1=10.0, rcut2=12.0)

    run = run_md(collapsing, hydrogen, SHORT_CONSTANT)

    assert run.failure_reason == "close_contact"
    assert run.min_distance_ratio < 0.5
    assert "atoms 0 (H) and 1 (H)" in run.failure_detail


def test_non_finite_forces_end_the_run_at_once():
    molecule = generate_target_dataset(1, seed=3, system="molecules")[0]

    run = run_md(NaNForces(), molecule, SHORT_CONSTANT, settings=MDSettings(frame_interval=1))

    assert run.failure_reason == "not_finite"
    assert run.steps_completed == 0
    assert run.frames == ()
