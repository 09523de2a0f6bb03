"""The study's four hole criteria (Appendix A.5) on hand-built structures and numbers."""

import ase
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from core.evaluation.relaxation import Relaxed
from core.evaluation.rss import hole_statistics, rate_warnings
from core.evaluation.rss_criteria import (
    HoleCriteria,
    energy_threshold,
    flag_holes,
    min_distance_ratio,
)
from core.evaluation.rss_plan import compositions_from_data, rss_plan
from core.science.spec import RssHolesSettings


def _described(structures: list[ase.Atoms]) -> tuple[list[float], list[float], list]:
    energies, volumes, ratios = [], [], []
    for atoms in structures:
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy() / len(atoms))
        volumes.append(atoms.get_volume() / len(atoms))
        ratios.append(min_distance_ratio(atoms))
    return energies, volumes, ratios


def _fcc_copies(count: int = 4) -> list[ase.Atoms]:
    # Equilibrium Cu (EMT: a = 3.59 Å) and copies strained by a per cent or two.
    return [bulk("Cu", "fcc", a=3.59 * (1 + 0.005 * k), cubic=True) for k in range(count)]


def test_two_atoms_closer_than_half_their_covalent_radii_are_flagged():
    dimer = ase.Atoms("Cu2", positions=[[0, 0, 0], [0.3, 0, 0]], cell=[10, 10, 10], pbc=True)

    ratio = min_distance_ratio(dimer)
    flags = flag_holes([0.0, 0.0, 0.0], [100.0, 100.0, 100.0], [None, None, ratio])

    assert ratio == pytest.approx(0.3 / (2 * 1.32), rel=1e-3)
    assert flags == [[], [], ["min_distance"]]


def test_an_equilibrium_fcc_cell_is_not_flagged():
    structures = _fcc_copies()

    energies, volumes, ratios = _described(structures)

    # Nearest neighbours 2.54 Å apart: 0.96 of the sum of covalent radii, far from 0.5.
    assert min_distance_ratio(structures[0]) == pytest.approx(3.59 / 2**0.5 / 2.64)
    assert flag_holes(energies, volumes, ratios) == [[], [], [], []]


def test_a_cell_squeezed_to_a_quarter_of_its_volume_is_flagged():
    structures = _fcc_copies()
    squeezed = structures[0].copy()
    squeezed.set_cell(squeezed.cell * 0.25 ** (1 / 3), scale_atoms=True)

    energies, volumes, ratios = _described([*structures, squeezed])
    flags = flag_holes(energies, volumes, ratios)

    assert flags[:4] == [[], [], [], []]
    assert "collapsed_volume" in flags[4]
    # EMT's wall holds: the squeezed cell is high in energy, so the energy criteria stay quiet.
    assert "low_energy" not in flags[4] and "compressed_low_energy" not in flags[4]


def test_energy_far_below_the_median_is_flagged_but_never_within_the_floor():
    energies = [0.0, 0.01, -0.01, 0.02, -0.02, -6.0, -4.9]
    flags = flag_holes(energies, [10.0] * 7, [None] * 7)

    # 10 MADs is 0.2 eV/atom here; the 5 eV/atom floor decides.
    assert energy_threshold(0.0, 0.02, HoleCriteria()) == -5.0
    assert flags[5] == ["low_energy"] and flags[6] == []


def test_energy_threshold_follows_a_wide_spread():
    assert energy_threshold(-1.0, 2.0, HoleCriteria()) == pytest.approx(-21.0)


def test_compressed_with_energy_below_the_median_is_flagged_and_above_it_is_not():
    volumes = [10.0, 10.0, 10.0, 10.0, 4.5, 4.5]
    energies = [0.0, 0.1, -0.1, 0.05, -0.2, 0.5]
    flags = flag_holes(energies, volumes, [None] * 6)

    assert flags[4] == ["compressed_low_energy"]
    assert flags[5] == []


def test_every_threshold_is_a_parameter():
    strict = HoleCriteria(
        min_distance_fraction=0.8,
        collapsed_volume_fraction=0.9,
        energy_mad_multiple=1.0,
        energy_floor_ev_per_atom=0.1,
        compressed_volume_fraction=0.95,
    )
    energies, volumes, ratios = (
        [0.0, 0.0, 0.0, -0.5],
        [10.0, 10.0, 10.0, 8.5],
        [None, None, 0.7, None],
    )

    assert flag_holes(energies, volumes, ratios) == [[], [], [], []]
    assert flag_holes(energies, volumes, ratios, strict) == [
        [],
        [],
        ["min_distance"],
        ["collapsed_volume", "low_energy", "compressed_low_energy"],
    ]


def test_failures_are_counted_per_composition_not_dropped():
    atoms = bulk("Cu", "fcc", a=3.6)
    done = [Relaxed("Cu1", k, 0.1, 225, atoms, 0.0, 11.7, None) for k in range(3)]
    failed = Relaxed("Cu1", 3, 0.1, None, failure="the model returned a non-finite energy")

    rates, flagged = hole_statistics([*done, failed], HoleCriteria())

    group = rates["0.1"]["compositions"]["Cu1"]
    assert (group["structures"], group["relaxed"], group["failed"], group["holes"]) == (4, 3, 1, 0)
    assert rates["0.1"]["rate"] == 0.0 and flagged == []


def test_a_model_far_above_its_foundation_gets_a_warning():
    def rates(rate: float) -> dict:
        return {"rates": {"0.1": {"rate": rate}, "50": {"rate": 0.1}}}

    warnings = rate_warnings({"model": rates(0.43), "foundation": rates(0.086)}, margin=0.05)
    quiet = rate_warnings({"model": rates(0.11), "foundation": rates(0.086)}, margin=0.05)

    assert len(warnings) == 1 and "0.1 GPa" in warnings[0] and "43%" in warnings[0]
    assert quiet == []


def test_compositions_come_from_the_data_as_cells_of_whole_formula_units():
    data = [
        ase.Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]]),
        ase.Atoms("Na2Cl2", positions=np.arange(12).reshape(4, 3)),
        ase.Atoms("H2O", positions=np.arange(9).reshape(3, 3)),
        ase.Atoms("H"),  # an isolated atom has no stoichiometry
    ]

    assert compositions_from_data(data, max_compositions=5, max_atoms=8) == ["Na4Cl4", "H4O2"]
    assert compositions_from_data(data, max_compositions=1, max_atoms=8) == ["Na4Cl4"]


def test_explicit_compositions_and_the_study_preset():
    plan = rss_plan(RssHolesSettings(preset="study", compositions=["NaCl", "Na4Cl4"]))

    assert plan.compositions == ("Na1Cl1", "Na4Cl4")
    assert plan.structures_per_composition == 50
    assert plan.relax.cycles == 3 and plan.relax.pressures_gpa == (0.1, 50.0)


@pytest.mark.parametrize("composition", ["Xx2", "Na0Cl", "Cu100"])
def test_bad_compositions_are_refused_in_the_spec(composition):
    with pytest.raises(ValueError, match=composition):
        RssHolesSettings(compositions=[composition])


def test_job_and_evaluation_reports_carry_the_hole_rate_warning():
    from core.reporting.job_report import evaluation_report, job_report
    from core.service.models import Evaluation, Job, JobState

    section = {"rss_holes": {"warnings": ["hole rate 43% against the foundation's 9%"]}}
    job = Job(
        id="j1",
        state=JobState.SUCCEEDED,
        spec={"strategy": {"name": "naive"}, "foundation_model": "f", "train_dataset": "d"},
        warnings=["E0 mismatch corrected"],
        epochs=[],
        metrics=section,
    )
    evaluation = Evaluation(id="e1", spec={"model": {"job": "j1"}}, report=section)

    assert job_report(job)["warnings"] == [
        "E0 mismatch corrected",
        *section["rss_holes"]["warnings"],
    ]
    assert evaluation_report(evaluation)["warnings"] == section["rss_holes"]["warnings"]


@pytest.mark.parametrize(
    "field", [{"seed": -1}, {"pressures_gpa": [5000.0]}, {"pressures_gpa": []}]
)
def test_settings_out_of_range_are_refused(field):
    with pytest.raises(ValueError):
        RssHolesSettings(**field)


def test_a_sweep_compares_the_hole_rate_at_the_lowest_pressure():
    from core.service.models import Job, JobState
    from core.workflows.sweeps import comparison_row

    rates = {"50": {"rate": 0.5}, "0.1": {"rate": 0.086}}
    job = Job(
        id="j1",
        state=JobState.SUCCEEDED,
        spec={"strategy": {"name": "naive"}},
        warnings=[],
        metrics={"rss_holes": {"models": {"model": {"rates": rates}}}},
    )

    assert comparison_row(job)["rss_hole_rate"] == 0.086
