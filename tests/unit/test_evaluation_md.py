"""MD stability (science.md §3): a sound model survives short runs; broken ones are caught, each
with its reason; structures too small to have a temperature are replicated; the lengths run are
sized to a budget and shown beside the study's."""

import copy
import json
from pathlib import Path

import ase
import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.morse import MorsePotential

from core.data.demo_data import generate_target_dataset
from core.evaluation.md import MDRunSpec, MDSettings, md_stability, run_md
from core.evaluation.md_plan import MIN_RUN_STEPS, MDLengths, md_budget_s, plan_md_runs
from core.evaluation.md_section import md_outcome
from core.evaluation.md_systems import MDNotApplicable, first_copy, md_system
from core.evaluation.rdf import radial_distribution
from core.reporting.verdicts import report_verdicts
from core.science.spec import EvaluationSettings

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
    assert run.failure_reason in {
        "energy_drift",
        "close_contact",
        "not_finite",
        "bonds_changed",
        "temperature_runaway",
    }
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


class Heating(Calculator):
    """EMT plus a force along each atom's momentum: work done on the motion every step, as a
    model sliding down into a hole of its own turns potential energy into heat."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, rate_per_fs: float) -> None:
        super().__init__()
        self.rate_per_fs = rate_per_fs
        self.emt = EMT()

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.emt.calculate(atoms, ["energy", "forces"], system_changes)
        # dp/dt = rate · p, in ASE units (momentum per ASE time unit).
        push = self.rate_per_fs * atoms.get_momenta() / units.fs
        self.results = {
            "energy": self.emt.results["energy"],
            "forces": self.emt.results["forces"] + push,
        }


def copper_cell():
    return md_system(bulk("Cu", "fcc", a=3.6, cubic=True), cutoff=5.0).atoms


def test_emt_copper_stays_stable_through_both_runs_with_every_criterion_on():
    cell = copper_cell()

    result = md_stability(
        EMT(),
        cell,
        runs=(
            MDRunSpec("constant", 100.0, 100.0, 200),
            MDRunSpec("ramp", 50.0, 800.0, 200),
        ),
    )

    assert result.stable
    for run in result.runs:
        assert run.failure_reason is None
        assert run.bonds_at_start == len(cell) * 12 // 2  # fcc: 12 nearest neighbours
        low, high = MDSettings().criteria.temperature_band(run.end_temperature_k)
        assert run.peak_temperature_k < high


def test_a_run_that_heats_away_is_unstable_as_a_temperature_runaway():
    cell = copper_cell()

    run = run_md(Heating(rate_per_fs=0.03), cell, MDRunSpec("constant_100K", 100, 100, 400))

    assert not run.stable
    assert run.failure_reason == "temperature_runaway"
    assert "target 100 K" in run.failure_detail
    assert run.peak_temperature_k > 600
    # Bonds held and energy stayed within its limit: the heat alone ended the run.
    assert run.max_energy_drift_ev_per_atom < 1.0


def test_a_run_that_tears_a_bond_apart_is_unstable_with_the_bond_named():
    # A Morse "model" whose H-H bond is 2 Å long pulls H2 (0.74 Å) apart.
    hydrogen = md_system(molecule("H2"), cutoff=3.0).atoms
    stretching = MorsePotential(epsilon=1.0, r0=2.0, rho0=4.0, rcut1=3.0, rcut2=4.0)

    run = run_md(stretching, hydrogen, MDRunSpec("constant_100K", 100, 100, 200))

    assert run.failure_reason == "bonds_changed"
    assert "bond(s) of the start structure broke" in run.failure_detail
    assert "(H) and" in run.failure_detail


def test_a_run_that_forms_a_bond_the_start_lacked_is_unstable():
    # Two H atoms 1.5 Å apart (no bond: 2.4 × the H-H natural cutoff) pulled to 0.45 Å.
    pair = ase.Atoms("H2", positions=[[0, 0, 0], [1.5, 0, 0]])
    binding = MorsePotential(epsilon=1.0, r0=0.45, rho0=2.0, rcut1=10.0, rcut2=12.0)

    run = run_md(binding, pair, MDRunSpec("constant_100K", 100, 100, 200))

    assert run.failure_reason == "bonds_changed"
    assert "new bond(s) formed" in run.failure_detail


def test_the_demo_foundation_on_the_demo_water_is_unstable_as_the_readme_demo_was(foundation):
    # The README demo job's model took water from 44 K to 2700 K in 0.025 ps and was called
    # stable; the demo foundation it starts from does the same to the demo's water.
    water = generate_target_dataset(1, seed=2, system="molecules")[0]
    system = md_system(water, cutoff=5.0)

    run = run_md(foundation, system.atoms, MDRunSpec("constant_100K", 100, 100, 100))

    assert not run.stable
    assert run.failure_reason in {"bonds_changed", "temperature_runaway"}
    assert run.time_survived_ps < 0.05


def test_a_small_molecule_is_replicated_into_copies_set_apart_beyond_the_cutoff():
    water = molecule("H2O")

    system = md_system(water, cutoff=5.0)

    assert system.n_atoms >= 32 and system.n_atoms % 3 == 0
    assert system.copies_apart and "copies" in system.replication
    positions = system.atoms.positions.reshape(-1, 3, 3)
    centres = positions.mean(axis=1)
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres)) * 1e9
    assert gaps.min() > 5.0
    assert first_copy(system.atoms, system).get_chemical_formula() == "H2O"


def test_a_small_periodic_cell_becomes_a_supercell_and_a_lone_atom_is_not_applicable():
    primitive = bulk("Cu", "fcc", a=3.6)  # one atom

    system = md_system(primitive, cutoff=5.0)

    assert system.n_atoms >= 32 and system.atoms.pbc.all()
    assert "supercell" in system.replication and not system.copies_apart
    with pytest.raises(MDNotApplicable, match="lone atom"):
        md_system(ase.Atoms("Cu"), cutoff=5.0)


def test_isolated_atoms_alone_give_a_not_applicable_md_verdict(foundation):
    atoms = [ase.Atoms("Cu", cell=[10, 10, 10]), ase.Atoms("Au", cell=[10, 10, 10])]

    outcome = md_outcome(foundation, atoms, EvaluationSettings(), budget_s=1.0, on_stage=print)

    assert [run.stable for run in outcome.runs] == [None]
    [verdict] = report_verdicts({"md": [run.to_json() for run in outcome.runs]})
    assert verdict.level == "warn" and verdict.value.startswith("not applicable: Cu: a lone atom")


def test_the_lengths_share_the_budget_equally_up_to_the_study_lengths():
    plan = plan_md_runs(MDLengths(), step_seconds=0.01, budget_s=10.0)

    constant, ramp = plan.runs
    assert constant.n_steps == ramp.n_steps == 500  # 1000 steps affordable, halved
    assert "budget of 10 s at 10 ms per step" in plan.basis

    # A budget beyond the ramp's 50 ps gives the rest to the constant run, up to 250 ps.
    constant, ramp = plan_md_runs(MDLengths(), step_seconds=1e-5, budget_s=1e4).runs
    assert (constant.n_steps, ramp.n_steps) == (500_000, 100_000)


def test_a_slower_step_or_more_structures_give_shorter_runs_but_never_below_the_floor():
    fast = plan_md_runs(MDLengths(), step_seconds=0.01, budget_s=20.0).runs[0]
    slow = plan_md_runs(MDLengths(), step_seconds=0.02, budget_s=20.0).runs[0]
    shared = plan_md_runs(MDLengths(), step_seconds=0.01, budget_s=20.0, n_structures=2).runs[0]
    tiny = plan_md_runs(MDLengths(), step_seconds=1.0, budget_s=1.0).runs[0]

    assert slow.n_steps == shared.n_steps == fast.n_steps // 2
    assert tiny.n_steps == MIN_RUN_STEPS


def test_lengths_asked_in_ps_are_run_as_asked_and_md_steps_caps_them():
    constant, ramp = plan_md_runs(
        MDLengths(constant_ps=0.3, ramp_ps=0.1), step_seconds=1.0, budget_s=1.0
    ).runs
    assert (constant.n_steps, ramp.n_steps) == (600, 200)

    capped = plan_md_runs(MDLengths(constant_ps=0.3, max_steps=50), step_seconds=1.0, budget_s=1.0)
    assert [run.n_steps for run in capped.runs] == [50, 50]


def test_the_md_budget_is_a_quarter_of_the_training_time():
    assert md_budget_s(40.0) == pytest.approx(10.0)
    assert md_budget_s(None) > 0


@pytest.mark.parametrize(
    ("field", "value"), [("md_constant_ps", 251.0), ("md_ramp_ps", 51.0), ("md_ramp_ps", 0.0)]
)
def test_md_lengths_beyond_the_study_or_at_zero_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        EvaluationSettings.model_validate({field: value})


def test_md_reports_its_steps_up_to_the_total_and_an_evaluation_records_them(foundation):
    from typing import cast

    from core.workflows.evaluations import _StepsRecorder
    from core.workflows.work import Work

    cell = generate_target_dataset(2, seed=3)[1]
    steps: list[tuple[str, int, int]] = []
    settings = EvaluationSettings(md_steps=20)

    def on_steps(stage: str, done: int, total: int) -> None:
        steps.append((stage, done, total))

    md_outcome(foundation, [cell], settings, budget_s=1.0, on_stage=print, on_steps=on_steps)

    assert steps[-1] == ("md 1/1", 40, 40)
    assert [done for _, done, _ in steps] == sorted(done for _, done, _ in steps)

    class Stages:
        def __init__(self) -> None:
            self.names: list[str] = []

        def stage(self, name: str) -> None:
            self.names.append(name)

    recorded = Stages()
    recorder = _StepsRecorder(cast(Work, recorded), interval_s=3600)
    for stage, done, total in steps:
        recorder(stage, done, total)
    # The first write and the last: the steps between fall within one interval.
    assert recorded.names == [f"md 1/1 {steps[0][1]}/40 steps", "md 1/1 40/40 steps"]
