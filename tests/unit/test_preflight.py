"""Preflight findings on hand-built data: each rule alone, then the whole review."""

import numpy as np
import pytest
from ase import Atoms

from core.science.e0s import fit_e0_residuals
from core.science.label_units import KCAL_PER_MOL_PER_EV, energy_scale, force_scale
from core.science.preflight_findings import (
    FoundationPredictions,
    acknowledged,
    duplicate_findings,
    reference_findings,
    review,
    unit_findings,
    unknown_element_findings,
)

FOUNDATION_E0S = {"H": -1.0, "C": -5.0, "O": -4.0}


def molecules(count: int, seed: int = 0) -> list[Atoms]:
    """Rattled H2O, CH4 and CO2 in varying proportions: a full-rank composition matrix."""
    rng = np.random.default_rng(seed)
    shapes = [("H2O", 3), ("CH4", 5), ("CO2", 3), ("C2H4O", 7)]
    configs = []
    for index in range(count):
        formula, n = shapes[index % len(shapes)]
        atoms = Atoms(formula, positions=rng.normal(scale=1.2, size=(n, 3)))
        configs.append(atoms)
    return configs


def foundation_energies(configs: list[Atoms], seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([sum(FOUNDATION_E0S[s] for s in a.get_chemical_symbols()) for a in configs])
    # An interaction energy that varies from structure to structure, a few eV wide.
    return base + rng.normal(scale=2.0, size=len(configs))


def shifted(configs: list[Atoms], energies: np.ndarray, per_atom: dict[str, float]) -> np.ndarray:
    offsets = [sum(per_atom[s] for s in a.get_chemical_symbols()) for a in configs]
    return energies + np.array(offsets)


def test_e0_residual_fit_recovers_a_per_element_offset() -> None:
    configs = molecules(24)
    predicted = foundation_energies(configs)
    offsets = {"H": -1.7, "C": -4.1, "O": -2.6}

    fit = fit_e0_residuals(configs, shifted(configs, predicted, offsets), predicted)

    assert fit.delta == pytest.approx(offsets, abs=1e-9)
    assert fit.rank == 3
    assert fit.energy_rmse_before > 1000
    assert fit.energy_rmse_after == pytest.approx(0, abs=1e-6)


def test_a_dataset_shifted_by_two_ev_per_atom_is_a_blocking_mismatch_with_foundation_e0s() -> None:
    configs = molecules(24)
    predicted = foundation_energies(configs)
    reference = predicted + 2.0 * np.array([len(a) for a in configs])
    fit = fit_e0_residuals(configs, reference, predicted)

    with_foundation = reference_findings(fit, "foundation", fit.energy_rmse_before)
    with_estimated = reference_findings(fit, "estimated", fit.energy_rmse_after)

    [blocking] = [f for f in with_foundation if f.code == "reference_mismatch"]
    assert blocking.severity == "blocking"
    assert blocking.details["energy_rmse_before_mev_per_atom"] == pytest.approx(2000)
    [corrected] = [f for f in with_estimated if f.code == "reference_mismatch"]
    assert corrected.severity == "info"


def test_all_electron_energies_are_reported_as_another_zero_of_energy() -> None:
    configs = molecules(24)
    predicted = foundation_energies(configs)
    reference = shifted(configs, predicted, {"H": -12.0, "C": -1025.0, "O": -2040.0})

    findings = reference_findings(fit_e0_residuals(configs, reference, predicted), "estimated", 0)

    codes = {f.code: f for f in findings}
    assert codes["absolute_reference"].details["element"] == "O"
    assert codes["reference_mismatch"].severity == "info"


def test_energies_in_kcal_per_mol_are_flagged_as_blocking() -> None:
    configs = molecules(24)
    predicted = foundation_energies(configs)
    reference = shifted(configs, predicted, {"H": -1.7, "C": -4.1, "O": -2.6}) * KCAL_PER_MOL_PER_EV

    fit = energy_scale(configs, reference, predicted)
    findings = unit_findings(fit, None)

    assert fit is not None and fit.scale == pytest.approx(KCAL_PER_MOL_PER_EV, rel=1e-6)
    [finding] = findings
    assert (finding.code, finding.severity) == ("energy_units", "blocking")
    assert finding.details["unit"] == "kcal/mol"


def test_forces_in_ev_per_bohr_are_flagged_and_ev_per_angstrom_pass() -> None:
    rng = np.random.default_rng(3)
    predicted = rng.normal(size=(60, 3))
    noisy = predicted + rng.normal(scale=0.05, size=predicted.shape)

    in_bohr = unit_findings(None, force_scale(noisy * 0.529177, predicted))
    in_angstrom = unit_findings(None, force_scale(noisy, predicted))

    assert [(f.code, f.details["unit"]) for f in in_bohr] == [("forces_units", "eV/Bohr")]
    assert in_angstrom == []


def test_energies_without_a_foundation_correlation_raise_no_unit_finding() -> None:
    rng = np.random.default_rng(4)
    configs = molecules(24)
    reference = rng.normal(scale=50, size=len(configs))

    assert unit_findings(energy_scale(configs, reference, foundation_energies(configs)), None) == []


def test_exact_and_near_duplicates_are_found_and_conflicting_labels_named() -> None:
    configs = molecules(6)
    rotated = configs[1].copy()
    rotated.rotate(40, "z")
    rotated.positions[0] += 0.001
    reordered = configs[2][[2, 0, 1]]
    data = [*configs, configs[0].copy(), reordered, rotated]
    energies = np.arange(len(data), dtype=float)

    findings = {f.code: f for f in duplicate_findings(data, energies)}

    assert sorted(map(sorted, findings["exact_duplicates"].details["groups"])) == [[0, 6], [2, 7]]
    assert len(findings["exact_duplicates"].details["conflicting_groups"]) == 2
    assert findings["near_duplicates"].details["groups"] == [[1, 8]]


def test_unknown_elements_block_fine_tuning_but_not_scratch() -> None:
    [blocking] = unknown_element_findings(["H", "C", "Zr"], ["H", "C", "O"], scratch=False)
    [informative] = unknown_element_findings(["H", "Zr"], ["H", "C", "O"], scratch=True)

    assert blocking.severity == "blocking" and blocking.details["elements"] == ["Zr"]
    assert informative.severity == "info"


def test_acknowledged_blocking_findings_become_warnings_except_unknown_elements() -> None:
    configs = molecules(24)
    predicted = foundation_energies(configs)
    reference = predicted + 3.0 * np.array([len(a) for a in configs])
    fit = fit_e0_residuals(configs, reference, predicted)
    findings = reference_findings(fit, "foundation", None)
    findings += unknown_element_findings(["Zr"], ["H"], scratch=False)

    result = acknowledged(findings, ["reference_mismatch", "unknown_elements"])

    assert {f.code: f.severity for f in result} == {
        "reference_mismatch": "warning",
        "unknown_elements": "blocking",
    }


def test_review_of_consistent_data_blocks_nothing_and_suggests_naive_with_estimated_e0s() -> None:
    configs = molecules(24)
    predicted = foundation_energies(configs)
    reference = shifted(configs, predicted, {"H": -1.7, "C": -4.1, "O": -2.6})
    rng = np.random.default_rng(5)
    forces = [rng.normal(size=(len(a), 3)) for a in configs]
    predicted_forces = [f + rng.normal(scale=0.5, size=f.shape) for f in forces]

    report = review(
        configs,
        reference,
        forces,
        FoundationPredictions(predicted, predicted_forces, list(range(len(configs)))),
        known_elements=["H", "C", "O"],
        foundation_e0s=FOUNDATION_E0S,
        scratch=False,
        e0_method="estimated",
        isolated_energies={},
    )

    assert report.blocking == []
    assert report.e0_residuals == pytest.approx({"H": -1.7, "C": -4.1, "O": -2.6})
    assert report.foundation_errors["forces_rmse_mev_per_a"] == pytest.approx(500, rel=0.2)
    assert report.suggestion is not None
    assert (report.suggestion.strategy, report.suggestion.e0s) == ("naive", "estimated")
    assert "reason" in report.to_dict()["suggestion"]


def test_review_suggests_isolated_atoms_when_they_cover_every_element() -> None:
    configs = molecules(8)
    predicted = foundation_energies(configs)

    report = review(
        configs,
        predicted,
        [None] * len(configs),
        FoundationPredictions(predicted, None, []),
        known_elements=["H", "C", "O"],
        foundation_e0s=FOUNDATION_E0S,
        scratch=False,
        e0_method="foundation",
        isolated_energies={"H": -1.0, "C": -5.0, "O": -4.0},
    )

    assert report.suggestion is not None and report.suggestion.e0s == "isolated_atoms"
    assert report.blocking == []


def test_duplicates_are_named_by_their_positions_in_the_dataset() -> None:
    # Issue 18 item 8: the split names dataset positions; so must preflight, isolated atoms
    # included in the counting.
    configs = molecules(4)
    data = [Atoms("H"), configs[0], configs[1], Atoms("O"), configs[0].copy()]
    molecules_only = [data[1], data[2], data[4]]

    findings = {f.code: f for f in duplicate_findings(molecules_only, None, [1, 2, 4])}

    assert findings["exact_duplicates"].details["groups"] == [[1, 4]]
    assert "[1, 4]" in findings["exact_duplicates"].message


def test_the_suggestion_is_one_the_submission_accepts_when_the_foundation_lacks_an_element() -> (
    None
):
    configs = [Atoms("Zr2", positions=[(0, 0, 0), (2.5, 0, 0)]) for _ in range(3)]

    report = review(
        configs,
        np.array([-17.0, -17.1, -17.2]),
        [None] * 3,
        None,
        known_elements=["H", "C", "O"],
        foundation_e0s=FOUNDATION_E0S,
        scratch=False,
        e0_method="estimated",
        isolated_energies={},
    )

    assert report.suggestion is not None
    assert (report.suggestion.strategy, report.suggestion.e0s) == ("scratch", "average")
    assert "does not know Zr" in report.suggestion.reason


def test_a_blocking_mismatch_after_reestimation_blames_the_foundation_and_says_how_to_proceed() -> (
    None
):
    configs = molecules(24)
    predicted = foundation_energies(configs)
    rng = np.random.default_rng(3)
    # Far off, and not by any per-element offset: the foundation does not know these structures.
    reference = predicted + rng.normal(scale=3.0, size=len(configs)) * [len(a) for a in configs]
    fit = fit_e0_residuals(configs, reference, predicted)

    [finding] = [
        f
        for f in reference_findings(fit, "estimated", fit.energy_rmse_after)
        if f.code == "reference_mismatch"
    ]

    assert finding.severity == "blocking"
    assert "interaction energies are far from the data" in finding.message
    assert "check units" not in finding.message
    assert "preflight.acknowledge" in finding.message
