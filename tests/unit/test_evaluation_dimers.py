"""Short-range repulsion (science.md §3): dimer curves and compression must rise at short range."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.demo_data import generate_target_dataset
from core.evaluation.dimers import compression_curve, dimer_curve, short_range_repulsion


@pytest.fixture(scope="module")
def foundation(demo_foundation: Path) -> torch.nn.Module:
    return torch.load(demo_foundation, weights_only=False)


@pytest.fixture(scope="module")
def inverted(foundation: torch.nn.Module) -> torch.nn.Module:
    """The foundation with its interaction energy negated: every repulsive wall becomes a well."""
    model = copy.deepcopy(foundation)
    with torch.no_grad():
        # The last linear layer of each readout: negating it negates that readout's output.
        model.readouts[0].linear.weight.neg_()
        model.readouts[1].linear_2.weight.neg_()
    return model


@pytest.mark.parametrize("pair", [("H", "H"), ("H", "O"), ("C", "O")])
def test_demo_foundation_dimers_of_light_elements_rise_at_short_range(foundation, pair):
    curve = dimer_curve(foundation, *pair)

    energies = np.array(curve.energies_ev)
    assert curve.hole is None
    assert 0.6 < curve.minimum_distance_a < 1.3
    assert energies[0] > energies.min() + 1.0  # at 0.5 Å, well up the wall
    assert energies[-1] == pytest.approx(0.0, abs=1e-9)  # beyond r_max: two isolated atoms


def test_demo_foundation_cu_cu_turning_over_below_the_wall_is_a_hole(foundation):
    # A real defect of the demo model: trained on EMT data near equilibrium, its Cu-Cu energy
    # falls again below ~1.3 Å.
    curve = dimer_curve(foundation, "Cu", "Cu")

    assert curve.hole is not None
    assert curve.hole.below < curve.minimum_distance_a
    assert curve.hole.depth > 1.0


def test_inverted_model_dimer_is_flagged(inverted):
    curve = dimer_curve(inverted, "H", "O")

    assert curve.hole is not None
    energies = dict(zip(curve.distances_a, curve.energies_ev, strict=True))
    assert energies[0.5] < energies[curve.hole.below]


def test_compressed_molecule_rises_for_the_foundation_and_collapses_for_the_inverted_model(
    foundation, inverted
):
    water = generate_target_dataset(1, seed=3, system="molecules")[0]

    sound = compression_curve(foundation, water)
    broken = compression_curve(inverted, water)

    assert sound.hole is None and sound.minimum_scale == 1.0
    assert np.all(np.diff(sound.energies_ev_per_atom) < 0)  # energy falls as the scale grows
    assert broken.hole is not None


def test_repulsion_report_names_the_holes_and_serialises(foundation):
    cell = generate_target_dataset(2, seed=3)[1]

    report = short_range_repulsion(foundation, ["H", "Cu"], [cell])

    assert [curve.pair for curve in report.dimers] == ["H-H", "Cu-H", "Cu-Cu"]
    assert "Cu-Cu" in report.holes and "H-H" not in report.holes
    serialised = json.loads(json.dumps(report.to_dict()))
    assert serialised["holes"] == report.holes
    assert len(serialised["compressions"][0]["scales"]) == 21
