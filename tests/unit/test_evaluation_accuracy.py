"""Pointwise accuracy (science.md §3) of the demo foundation against labels with known errors."""

import json
from pathlib import Path

import ase
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from core.data.demo_data import generate_target_dataset
from core.evaluation.accuracy import accuracy
from core.evaluation.md import model_calculator


@pytest.fixture(scope="module")
def foundation(demo_foundation: Path) -> torch.nn.Module:
    return torch.load(demo_foundation, weights_only=False)


@pytest.fixture(scope="module")
def configs() -> list[ase.Atoms]:
    """Periodic CuAu cells (with stress) and molecules in vacuum: two config types."""
    return generate_target_dataset(3, seed=1) + generate_target_dataset(
        3, seed=1, system="molecules"
    )


def self_labelled(
    model: torch.nn.Module,
    configs: list[ase.Atoms],
    *,
    energy_shift_per_atom: float = 0.0,
    force_shift: float = 0.0,
    stress_shift: float = 0.0,
) -> list[ase.Atoms]:
    """Copies labelled with the model's own predictions, plus known shifts (eV, eV/Å, eV/Å³)."""
    calculator = model_calculator(model)
    labelled = []
    for atoms in configs:
        copy = atoms.copy()
        copy.calc = calculator
        results = {
            "energy": copy.get_potential_energy() + energy_shift_per_atom * len(copy),
            "forces": copy.get_forces() + force_shift,
        }
        if copy.pbc.all():
            results["stress"] = copy.get_stress() + stress_shift
        copy.calc = SinglePointCalculator(copy, **results)
        labelled.append(copy)
    return labelled


def test_model_labelled_with_its_own_predictions_has_zero_error(foundation, configs):
    metrics = accuracy(foundation, self_labelled(foundation, configs), batch_size=4)

    errors = [
        metrics.energy_rmse_mev_per_atom,
        metrics.energy_mae_mev_per_atom,
        metrics.forces_rmse_mev_per_a,
        metrics.forces_mae_mev_per_a,
        metrics.stress_rmse_mev_per_a3,
        metrics.stress_mae_mev_per_a3,
    ]
    assert None not in errors
    assert max(errors) < 1e-6
    assert metrics.n_configs == len(configs)


def test_known_label_shifts_give_exact_errors_per_config_type(foundation, configs):
    cells, molecules = configs[:3], configs[3:]
    labelled = self_labelled(
        foundation, cells, energy_shift_per_atom=0.1, force_shift=0.02, stress_shift=0.003
    ) + self_labelled(foundation, molecules)

    metrics = accuracy(foundation, labelled)

    cuau, molecule = metrics.per_config_type["CuAu"], metrics.per_config_type["molecule"]
    assert cuau.n_configs == 3 and molecule.n_configs == 3
    # Predicted minus reference: shifted labels give the same error on every value.
    assert cuau.energy_rmse_mev_per_atom == pytest.approx(100.0, abs=1e-6)
    assert cuau.energy_mae_mev_per_atom == pytest.approx(100.0, abs=1e-6)
    assert cuau.forces_rmse_mev_per_a == pytest.approx(20.0, abs=1e-6)
    assert cuau.stress_rmse_mev_per_a3 == pytest.approx(3.0, abs=1e-6)
    assert molecule.energy_rmse_mev_per_atom == pytest.approx(0.0, abs=1e-6)
    assert molecule.stress_rmse_mev_per_a3 is None  # molecules in vacuum have no stress
    # Overall: three configurations off by 100 meV/atom, three exact.
    assert metrics.energy_rmse_mev_per_atom == pytest.approx(100.0 / np.sqrt(2), abs=1e-6)
    assert metrics.energy_mae_mev_per_atom == pytest.approx(50.0, abs=1e-6)


def test_parity_data_pairs_reference_with_prediction_and_is_capped(foundation, configs):
    labelled = self_labelled(foundation, configs, energy_shift_per_atom=0.1)

    parity = accuracy(foundation, labelled, max_parity_points=10).parity

    reference = np.array(parity.energy_reference_ev_per_atom)
    predicted = np.array(parity.energy_predicted_ev_per_atom)
    assert len(reference) == len(configs)
    np.testing.assert_allclose(reference - predicted, 0.1, atol=1e-9)
    assert len(parity.forces_reference_ev_per_a) == len(parity.forces_predicted_ev_per_a) == 10


def test_configurations_without_type_or_labels_are_reported_as_such(foundation, configs):
    molecule = configs[3].copy()  # no calculator: no labels
    del molecule.info["config_type"]

    metrics = accuracy(foundation, [molecule])

    assert list(metrics.per_config_type) == ["default"]
    assert metrics.energy_rmse_mev_per_atom is None
    assert metrics.forces_rmse_mev_per_a is None
    assert metrics.parity.energy_reference_ev_per_atom == []


def test_metrics_serialise_to_json_with_the_fields_training_reports(foundation, configs):
    metrics = accuracy(foundation, configs[:2])

    serialised = json.loads(json.dumps(metrics.to_dict()))

    assert serialised["energy_rmse_mev_per_atom"] > 0
    assert serialised["forces_rmse_mev_per_a"] > 0
    assert set(serialised["per_config_type"]) == {"CuAu"}
    assert "forces_predicted_ev_per_a" in serialised["parity"]


def test_a_constant_energy_offset_drops_out_of_the_offset_free_rmse(foundation, configs):
    # Issue 18 item 4: relative energies (scans, paths) are judged without the mean offset.
    shifted = self_labelled(foundation, configs, energy_shift_per_atom=0.05)

    metrics = accuracy(foundation, shifted, batch_size=4)

    assert metrics.energy_rmse_mev_per_atom == pytest.approx(50, abs=1e-6)
    assert metrics.energy_mean_error_mev_per_atom == pytest.approx(-50, abs=1e-6)
    assert metrics.energy_rmse_without_offset_mev_per_atom == pytest.approx(0, abs=1e-6)


def test_labels_the_model_misses_worse_than_zero_are_named(foundation, configs):
    # Issue 18 item 3: a stress error above the labels' own RMS is worse than predicting zero.
    far_off = self_labelled(foundation, configs)
    for atoms in far_off:
        if "stress" in atoms.calc.results:
            # Labels a hundredth of what the model predicts: predicting zero is closer.
            atoms.calc.results["stress"] = atoms.calc.results["stress"] * 0.01

    metrics = accuracy(foundation, far_off, batch_size=4)

    assert metrics.stress_label_rms_mev_per_a3 is not None
    assert metrics.worse_than_zero == ["stress"]
    assert metrics.parity.stress_reference_ev_per_a3


def test_energy_parity_is_relative_to_each_composition(foundation, configs):
    # Issue 18 item 9: absolute energies per atom span eV across compositions and hide errors.
    metrics = accuracy(foundation, self_labelled(foundation, configs), batch_size=4)

    reference = np.array(metrics.parity.energy_reference_ev_per_atom)
    assert np.abs(reference).max() < 1.0
    np.testing.assert_allclose(metrics.parity.energy_predicted_ev_per_atom, reference, atol=1e-9)
