"""Pseudolabels are the foundation's own predictions, computed once per foundation and set."""

import numpy as np
import pytest
from mace.calculators import MACECalculator

from core.data.demo_data import generate_foundation_configurations
from core.registry.foundations import load_own_model
from core.science.cache import PredictionCache
from core.science.pseudolabels import pseudolabelled


@pytest.fixture(scope="module")
def structures() -> list:
    configs = generate_foundation_configurations(12, seed=3)
    # Both kinds the replay head sees: periodic cells (with stress) and molecules in vacuum.
    assert any(atoms.pbc.all() for atoms in configs)
    assert any(not atoms.pbc.any() for atoms in configs)
    return configs


def test_pseudolabels_equal_the_foundations_single_structure_predictions(
    demo_foundation, structures
) -> None:
    model = load_own_model(demo_foundation)

    labelled = pseudolabelled(structures, model, "sha")

    calculator = MACECalculator(
        model_paths=str(demo_foundation), device="cpu", default_dtype="float64"
    )
    for original, atoms in zip(structures, labelled, strict=True):
        reference = original.copy()
        reference.calc = calculator
        assert atoms.info["REF_energy"] == pytest.approx(reference.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(atoms.arrays["REF_forces"], reference.get_forces(), atol=1e-8)
        if original.pbc.all():
            np.testing.assert_allclose(atoms.info["REF_stress"], reference.get_stress(), atol=1e-8)
        else:
            assert "REF_stress" not in atoms.info


def test_pseudolabels_are_computed_once_and_read_back_identically(
    demo_foundation, structures, tmp_path
) -> None:
    model = load_own_model(demo_foundation)
    cache = PredictionCache(tmp_path)

    first = pseudolabelled(structures, model, "sha", cache=cache)
    files = sorted(tmp_path.glob("*.npz"))
    second = pseudolabelled(structures, model, "sha", cache=cache)

    assert len(files) == 1 and sorted(tmp_path.glob("*.npz")) == files
    for a, b in zip(first, second, strict=True):
        assert a.info["REF_energy"] == b.info["REF_energy"]
        np.testing.assert_array_equal(a.arrays["REF_forces"], b.arrays["REF_forces"])
        assert ("REF_stress" in a.info) == ("REF_stress" in b.info)
