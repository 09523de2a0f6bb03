"""RDFs and the earth mover's distance between them (science.md §3)."""

import ase
import numpy as np
import pytest
from ase.build import bulk, molecule
from scipy.stats import wasserstein_distance

from core.evaluation.rdf import (
    compare_rdfs,
    earth_movers_distance,
    radial_distribution,
)

R = np.arange(0.025, 6.0, 0.05)


def peak(centre: float, width: float = 0.1) -> np.ndarray:
    return np.exp(-0.5 * ((R - centre) / width) ** 2)


def test_emd_of_identical_rdfs_is_zero():
    g = peak(2.0) + 0.5 * peak(3.5)

    assert earth_movers_distance(R, g, g.copy()) == 0.0


def test_emd_grows_with_the_shift_of_a_peak_and_equals_it():
    shifts = [0.05, 0.1, 0.3, 0.6, 1.2]

    distances = [earth_movers_distance(R, peak(2.0), peak(2.0 + shift)) for shift in shifts]

    assert all(near < far for near, far in zip(distances, distances[1:], strict=False))
    np.testing.assert_allclose(distances, shifts, rtol=1e-3)


def test_emd_matches_scipy_wasserstein_distance_on_the_grid():
    first, second = peak(1.5) + peak(3.0, 0.3), 2.0 * peak(2.2, 0.2)

    expected = wasserstein_distance(R, R, u_weights=first, v_weights=second)

    assert earth_movers_distance(R, first, second) == pytest.approx(expected, rel=1e-9)


def test_periodic_rdf_of_an_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    frames = [
        ase.Atoms("Ar200", positions=rng.uniform(0, 12.0, (200, 3)), cell=[12.0] * 3, pbc=True)
        for _ in range(5)
    ]

    rdf = radial_distribution(frames)

    long_range = rdf.pairs["Ar-Ar"][(rdf.r > 2.0) & (rdf.r < 6.0)]
    assert rdf.periodic and rdf.n_frames == 5
    assert long_range.mean() == pytest.approx(1.0, abs=0.03)


def test_periodic_rdf_peaks_at_the_nearest_neighbour_distance_of_fcc():
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)

    rdf = radial_distribution([crystal])

    g = rdf.pairs["Cu-Cu"]
    assert rdf.r[np.argmax(g)] == pytest.approx(3.6 / np.sqrt(2), abs=0.05)
    assert g[rdf.r < 2.4].max() == 0.0


def test_molecule_rdf_is_a_unit_area_distance_distribution_per_pair():
    water = molecule("H2O")

    rdf = radial_distribution([water], bin_width=0.01)

    assert not rdf.periodic
    assert set(rdf.pairs) == {"H-H", "H-O"}
    for g in rdf.pairs.values():
        assert g.sum() * 0.01 == pytest.approx(1.0)
    assert rdf.r[np.argmax(rdf.pairs["H-O"])] == pytest.approx(water.get_distance(0, 1), abs=0.01)


def test_comparison_reports_each_common_pair_and_the_unmatched_ones():
    water, methanol = molecule("H2O"), molecule("CH3OH")
    reference = radial_distribution([water])

    same = compare_rdfs(radial_distribution([water.copy()]), reference)
    other = compare_rdfs(radial_distribution([methanol]), reference)

    assert same.emd_per_pair == {"H-H": 0.0, "H-O": 0.0} and same.mean_emd == 0.0
    assert other.emd_per_pair["H-O"] > 0.1
    assert other.unmatched_pairs == ("C-H", "C-O")  # methanol's; water has no carbon
    assert other.to_dict()["unmatched_pairs"] == list(other.unmatched_pairs)


def test_rdfs_on_different_grids_or_of_mixed_periodicity_are_refused():
    water = molecule("H2O")
    crystal = bulk("Cu", "fcc", a=3.6)

    with pytest.raises(ValueError, match="same r_max and bin_width"):
        compare_rdfs(radial_distribution([water]), radial_distribution([water], bin_width=0.1))
    with pytest.raises(ValueError, match="all periodic"):
        radial_distribution([water, crystal])
    with pytest.raises(ValueError, match="another periodic one"):
        compare_rdfs(radial_distribution([crystal]), radial_distribution([water]))
