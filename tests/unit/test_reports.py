"""The HTML report: one self-contained page, a figure per plotted section, and safe user strings."""

import re

import numpy as np
import pytest

from core.reporting.reports import render_html

# A full report draws: learning curves, one accuracy figure per dataset, MD traces, RDFs, dimer
# curves and compression curves.
FIGURES_IN_FULL_REPORT = 6


def full_report() -> dict:
    rng = np.random.default_rng(0)
    energy_reference = rng.normal(-4.1, 0.05, 40)
    force_reference = rng.normal(0.0, 1.2, 600)
    r = np.linspace(0.3, 6.0, 70)
    rdf_r = np.linspace(0.5, 6.0, 100)
    time = np.linspace(0.0, 10.0, 200)
    return {
        "title": "Acetylacetone fine-tune",
        "generated_at": "2025-03-04T10:20:30+00:00",
        "job": {
            "id": "job-7f3a",
            "state": "succeeded",
            "strategy": "naive",
            "foundation_model": "mace-mp-0-small",
            "train_dataset": "acac-train-300K",
            "test_dataset": "acac-test-600K",
            "created_at": "2025-03-04T08:45:00+00:00",
            "started_at": "2025-03-04T09:00:00+00:00",
            "finished_at": "2025-03-04T10:15:00+00:00",
            "effective_hyperparameters": {"lr": 0.01, "max_num_epochs": 30, "batch_size": 4},
        },
        "warnings": ["E0 mismatch corrected: 812 meV/atom before, 4.2 meV/atom after"],
        "checks": {
            "e0s": {"verified": True, "isolated_atoms_checked": True},
            "frozen_parameters": {"level": 5, "count": 120, "unchanged": False},
            "lora_merge_max_energy_difference_ev": 3.2e-10,
        },
        "e0s": {
            "method": "estimated",
            "e0s": {"H": -13.6057, "C": -1029.4821, "O": -2042.5612},
            "energy_rmse_before": 812.4,
            "energy_rmse_after": 4.217,
            "rank": 3,
            "n_configs": 500,
            "isolated_atom_energies": {"H": -13.6057, "C": -1029.4821, "O": -2042.5612},
        },
        "learning_curve": _learning_curve(),
        "accuracy": {
            "test": {
                "n_configs": 40,
                "energy_rmse_mev_per_atom": 1.234,
                "energy_mae_mev_per_atom": 0.987,
                "forces_rmse_mev_per_a": 23.456,
                "forces_mae_mev_per_a": 17.89,
                "per_config_type": {
                    "300K": {
                        "n_configs": 25,
                        "energy_rmse_mev_per_atom": 1.1,
                        "energy_mae_mev_per_atom": 0.9,
                        "forces_rmse_mev_per_a": 20.5,
                        "forces_mae_mev_per_a": 15.2,
                    },
                    "600K": {
                        "n_configs": 15,
                        "energy_rmse_mev_per_atom": 1.4,
                        "energy_mae_mev_per_atom": 1.1,
                        "forces_rmse_mev_per_a": 27.61,
                        "forces_mae_mev_per_a": 21.3,
                    },
                },
                "parity": {
                    "energy_per_atom": {
                        "reference": energy_reference.tolist(),
                        "predicted": (energy_reference + rng.normal(0, 0.0012, 40)).tolist(),
                    },
                    "forces": {
                        "reference": force_reference.tolist(),
                        "predicted": (force_reference + rng.normal(0, 0.023, 600)).tolist(),
                    },
                },
            }
        },
        "forgetting": {
            "dataset": "mp-replay-sample",
            "foundation": {
                "n_configs": 200,
                "energy_rmse_mev_per_atom": 30.0,
                "forces_rmse_mev_per_a": 80.0,
            },
            "finetuned": {
                "n_configs": 200,
                "energy_rmse_mev_per_atom": 36.0,
                "forces_rmse_mev_per_a": 98.72,
            },
            "force_rmse_ratio": 1.234,
        },
        "md": [
            {
                "run": "constant_temperature",
                "structure": "acac",
                "survived_ps": 10.0,
                "total_ps": 10.0,
                "stable": True,
                "failure": None,
                "temperature_K": (300 + rng.normal(0, 15, 200)).tolist(),
                "time_ps": time.tolist(),
                "energy_ev": (-2500.0 + np.cumsum(rng.normal(0, 0.002, 200))).tolist(),
            },
            {
                "run": "ramp",
                "kind": "ramp",
                "structure": "acac",
                "survived_ps": 6.5,
                "total_ps": 10.0,
                "study_ps": 50.0,
                "stable": False,
                "failure": "atoms closer than 0.5 Å at 1210 K",
                "temperature_K": np.linspace(300, 1500, 130).tolist(),
                "time_ps": time[:130].tolist(),
                "energy_ev": (-2500.0 + np.linspace(0, 3.0, 130)).tolist(),
            },
        ],
        "rdf": {
            "pairs": {
                pair: {
                    "r": rdf_r.tolist(),
                    "model": (1 + np.exp(-((rdf_r - peak) ** 2) / 0.02) * 3).tolist(),
                    "reference": (1 + np.exp(-((rdf_r - peak - 0.03) ** 2) / 0.02) * 3).tolist(),
                    "emd": 0.0123,
                }
                for pair, peak in (("O-H", 0.98), ("C-H", 1.09), ("C-O", 1.25))
            }
        },
        "dimers": {
            "pairs": {
                "H-H": {"r": r.tolist(), "energy": _morse(r, 4.5, 0.74).tolist(), "hole": False},
                # A hole: past the wall, the energy collapses as the atoms fuse.
                "O-H": {
                    "r": r.tolist(),
                    "energy": (_morse(r, 4.6, 0.97) - 400 * np.exp(-5 * r)).tolist(),
                    "hole": True,
                },
            },
            "compression": [
                {
                    "structure": "acac",
                    "scale": np.linspace(0.6, 1.4, 17).tolist(),
                    "energy": (-2500 + 40 * (np.linspace(0.6, 1.4, 17) - 1) ** 2).tolist(),
                    "hole": False,
                },
            ],
        },
    }


def _learning_curve() -> list[dict]:
    # mace logs one evaluation before training with epoch None, then one per epoch and head.
    return [
        {
            "epoch": epoch,
            "head": head,
            "loss": 2.0 / (2 + step + offset),
            "valid_energy_rmse_mev_per_atom": 40.0 / (2 + step + offset),
            "valid_forces_rmse_mev_per_a": 300.0 / (2 + step + offset),
        }
        for head, offset in (("target", 0), ("replay", 5))
        for step, epoch in enumerate([None, *range(20)])
    ]


def _morse(r: np.ndarray, depth: float, r0: float) -> np.ndarray:
    return depth * ((1 - np.exp(-2.5 * (r - r0))) ** 2 - 1)


@pytest.fixture(scope="module")
def full_html() -> str:
    return render_html(full_report())


def test_full_report_embeds_one_image_per_figure(full_html: str) -> None:
    assert full_html.count("<img") == FIGURES_IN_FULL_REPORT
    assert full_html.count('src="data:image/png;base64,') == FIGURES_IN_FULL_REPORT


def test_report_is_self_contained(full_html: str) -> None:
    assert "http://" not in full_html and "https://" not in full_html
    assert "<script" not in full_html


def test_numbers_appear_with_sensible_precision_and_units(full_html: str) -> None:
    assert "23.5 meV/Å" in full_html  # test force RMSE badge
    assert "1.23×" in full_html  # forgetting ratio
    assert "-1029.4821" in full_html  # E0 in eV
    assert "812" in full_html and "4.22" in full_html  # E0 RMSE before/after
    assert "27.6" in full_html  # per-config-type force RMSE
    assert "6.50" in full_html  # MD survival in ps
    assert "1 h 15 min" in full_html  # job duration


def test_verdicts_grade_the_job(full_html: str) -> None:
    verdicts = re.search(r'<div class="verdicts">(.*?)</header>', full_html, re.S).group(1)
    assert 'class="badge good">test force RMSE' in verdicts
    assert 'class="badge bad">MD stable<b>no (1 of 2 runs failed; ramp on acac' in verdicts
    assert "after 6.5 of 10 ps (study: 50 ps)" in verdicts
    assert 'class="badge bad">Dimer/compression holes<b>1 of 3' in verdicts
    assert 'class="badge warn">Warnings<b>1' in verdicts


def test_failed_check_is_shown_prominently(full_html: str) -> None:
    alert = re.search(r'<div class="alert bad"><b>Failed checks</b>(.*?)</div>', full_html).group(1)
    assert "frozen_parameters" in alert
    assert "e0s" not in alert


@pytest.mark.parametrize(
    ("section", "heading"),
    [
        ("e0s", "Reference energies"),
        ("learning_curve", "Learning curves"),
        ("accuracy", "Accuracy"),
        ("forgetting", "Forgetting"),
        ("md", "Molecular dynamics"),
        ("rdf", "Radial distribution"),
        ("dimers", "Dimers and compression"),
        ("checks", "Checks"),
    ],
)
def test_missing_section_leaves_no_heading(section: str, heading: str) -> None:
    report = full_report()
    report[section] = None

    page = render_html(report)

    assert f"<h2>{heading}" not in page
    assert f"<h2>{heading}" in render_html(full_report())


def test_user_strings_are_escaped() -> None:
    report = full_report()
    report["title"] = "<b>bold</b>"
    report["job"]["strategy"] = "<script>alert(1)</script>"
    report["warnings"] = ["<img src=x onerror=alert(1)>"]
    report["accuracy"]["test"]["per_config_type"]["<i>type</i>"] = {"n_configs": 1}
    report["rdf"]["pairs"]["$O$-H"] = report["rdf"]["pairs"].pop("O-H")
    # Unbalanced mathtext would make matplotlib raise, were names not taken literally.
    report["md"][0]["structure"] = r"Cu$\bad{$ slab & more"

    page = render_html(report)

    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>bold</b>" not in page and "<i>type</i>" not in page
    assert r"Cu$\bad{$ slab &amp; more" in page


def test_report_with_only_a_title_renders() -> None:
    page = render_html({"title": "Just a title"})

    assert "<h1>Just a title</h1>" in page
    assert "<h2" not in page and "<img" not in page and 'class="verdicts"' not in page


def test_sections_without_plot_data_render_tables_only() -> None:
    report = {
        "title": "Tables only",
        "accuracy": {"test": {"n_configs": 3, "energy_rmse_mev_per_atom": 2.5}},
        "md": [
            {
                "run": "ramp",
                "structure": "Cu",
                "survived_ps": 1.0,
                "total_ps": 1.0,
                "stable": True,
                "failure": None,
            }
        ],
        "learning_curve": [{"epoch": 0, "head": None, "loss": None}],
    }

    page = render_html(report)

    assert "<img" not in page
    assert "2.50" in page and "<h2>Molecular dynamics" in page


def test_a_held_out_test_split_is_named_as_the_job_s_test_data() -> None:
    # Issue 18 item 9: not "Test data: none" for a job with split.test_fraction.
    from datetime import datetime, timezone

    from core.reporting.job_report import job_report
    from core.service.models import Job, JobState

    job = Job(
        id="j1",
        state=JobState.SUCCEEDED,
        spec={
            "foundation_model": None,
            "train_dataset": "d1",
            "strategy": {"name": "scratch"},
            "split": {"test_fraction": 0.2},
        },
        split={"counts": {"test": 7}},
        warnings=[],
        epochs=[],
        created_at=datetime.now(timezone.utc),
    )

    report = job_report(job)

    assert report["job"]["test_dataset"] == "7 configurations held out of the training data"
    assert "None" not in report["title"]
    assert "7 configurations held out" in render_html(report)


def test_a_label_worse_than_predicting_zero_is_flagged_in_the_report_and_the_job() -> None:
    from core.workflows.training import accuracy_warnings

    test = {
        "n_configs": 3,
        "stress_rmse_mev_per_a3": 115.0,
        "stress_label_rms_mev_per_a3": 1.0,
        "worse_than_zero": ["stress"],
    }

    html = render_html({"title": "t", "accuracy": {"test": test}})
    [warning] = accuracy_warnings({"accuracy": {"test": test}})

    assert "Worse than predicting zero" in html
    assert "worse than predicting zero" in warning and "115" in warning
