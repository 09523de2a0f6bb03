"""Issue 21 item 4: every sentence the job, report and card show is true."""

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from core.reporting.model_card import render_markdown
from core.reporting.reports import render_html
from core.science.e0_choice import e0_warnings
from core.science.e0s import E0Fit
from core.science.preflight_findings import FoundationPredictions, review
from core.science.replay import ReplayFile
from core.science.spec import JobSpec
from core.science.strategies import spec_warnings
from core.service.models import ReplaySet
from core.workflows.runner import _checks_of
from core.workflows.training_records import TrainingResult
from tests.unit.test_model_card import card


def test_an_e0_mismatch_left_above_the_limit_is_not_called_corrected() -> None:
    fit = E0Fit("average", {"Cu": -3.1}, 3452.0, 3120.0, 1, 20)

    [warning] = e0_warnings(fit, JobSpec(train_dataset="d", e0s="average"))

    assert warning.startswith("E0 mismatch not corrected")
    assert "still 3120 meV/atom" in warning


def test_an_e0_mismatch_brought_below_the_limit_is_called_corrected() -> None:
    fit = E0Fit("estimated", {"Cu": -3.1}, 3452.0, 4.2, 1, 20)

    [warning] = e0_warnings(fit, JobSpec(train_dataset="d"))

    assert warning.startswith("E0 mismatch corrected")
    assert "4.2 meV/atom" in warning


def _labelled(symbols: str, energy: float, x: float) -> Atoms:
    n = len(Atoms(symbols))
    atoms = Atoms(symbols, positions=[[0, 0, 0], [x, 0, 0], [0, x, 0]][:n])
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
    return atoms


def test_the_preflight_finding_for_average_e0s_gives_the_after_value_not_the_before_value():
    # Two compositions, so the average E0s fit the data's offsets exactly; the foundation's own
    # E0s are 10 eV/atom off.
    configs = [_labelled("CuNi", -10.0 + 0.01 * i, 2.2 + 0.01 * i) for i in range(4)]
    configs += [_labelled("Cu2Ni", -15.0 + 0.01 * i, 2.3 + 0.01 * i) for i in range(4)]
    energies = np.array([atoms.get_potential_energy() for atoms in configs])
    n_atoms = np.array([len(atoms) for atoms in configs])
    predicted = energies + 10.0 * n_atoms + np.linspace(0, 0.5, len(configs))

    report = review(
        configs,
        energies,
        [None] * len(configs),
        FoundationPredictions(predicted, None, []),
        known_elements=["Ni", "Cu"],
        foundation_e0s={"Cu": -1.0, "Ni": -1.0},
        scratch=False,
        e0_method="average",
        isolated_energies={},
    )

    [finding] = [f for f in report.findings if f.code == "reference_mismatch"]
    before = finding.details["energy_rmse_before_mev_per_atom"]
    after = finding.details["energy_rmse_with_job_e0s_mev_per_atom"]
    assert before > 9000
    assert after is not None and after != before
    assert f"{after:.1f} meV/atom" in finding.message or f"{after:.0f} meV/atom" in finding.message


def test_the_report_duration_is_the_run_not_the_wait_in_the_queue() -> None:
    html = render_html(
        {
            "title": "t",
            "job": {
                "id": "j",
                "state": "succeeded",
                "created_at": "2026-11-29T10:00:00+00:00",
                "started_at": "2026-11-29T10:14:15+00:00",
                "finished_at": "2026-11-29T10:15:00+00:00",
            },
        }
    )

    assert "<dt>Duration</dt><dd>0 min 45 s</dd>" in html
    assert "<dt>Queued</dt><dd>14 min 15 s</dd>" in html


def test_replay_lora_at_its_own_preset_lr_gets_no_high_lr_warning() -> None:
    spec = JobSpec(train_dataset="d", strategy={"name": "replay_lora", "replay": {"dataset": "r"}})

    assert not any("replay with lr" in warning for warning in spec_warnings(spec))


def test_multihead_replay_at_a_high_lr_still_warns() -> None:
    spec = JobSpec(
        train_dataset="d",
        strategy={"name": "multihead_replay", "replay": {"dataset": "r"}},
        hyperparameters={"lr": 1e-3},
    )

    assert any("replay with lr 0.001" in warning for warning in spec_warnings(spec))


def _result(pseudolabelled: bool) -> TrainingResult:
    return TrainingResult(
        model_path=Path("model"),
        e0_fit=E0Fit("estimated", {}, None, None, None, 0),
        isolated_atom_energies={},
        evaluation={},
        replay=ReplayFile(Path("replay.extxyz"), 10, ["Cu"], "all", pseudolabelled),
        foundation={"name": "mace-demo-emt", "sha256": "f" * 64},
    )


def test_multihead_replay_of_a_set_the_foundation_labelled_says_pseudolabelled() -> None:
    replay_set = ReplaySet(
        id="rs1", report={"provenance": {"foundation_sha256": "f" * 64}}, spec={}
    )

    checks = _checks_of(_result(pseudolabelled=False), replay_set)

    assert checks["replay"]["pseudolabelled"] is True
    assert checks["replay"]["labels"] == "foundation (replay set rs1)"


def test_multihead_replay_of_a_labelled_dataset_says_dataset_labels() -> None:
    checks = _checks_of(_result(pseudolabelled=False), None)

    assert checks["replay"]["pseudolabelled"] is False
    assert checks["replay"]["labels"] == "dataset"


def test_the_markdown_card_prints_the_split_as_a_sentence() -> None:
    text = render_markdown(card())

    assert "Split: 30 train, 4 valid, 6 test configurations, seed 1." in text
    assert "{'counts'" not in text
