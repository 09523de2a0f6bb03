"""Issue 21 item 5: MD traces stored and drawn, readable per-head learning curves, and a
forgetting energy ratio that is not the E0 shift between two references."""

import numpy as np
import pytest
import torch
from ase.calculators.morse import MorsePotential

from core.data.demo_data import generate_target_dataset
from core.evaluation.forgetting import forgetting, offset_free_energy_rmse
from core.evaluation.md import MDRunSpec, MDSettings, _thinned, run_md
from core.evaluation.md_section import md_reports
from core.evaluation.md_systems import md_system
from core.reporting.reports import learning_curve_figure, render_html
from core.science.e0s import model_e0s, with_e0s


def test_an_md_run_stores_time_temperature_and_energy_traces() -> None:
    cell = generate_target_dataset(2, seed=3)[1]
    spec = MDRunSpec("constant", 100.0, 100.0, 30)

    run = run_md(MorsePotential(), cell, spec, settings=MDSettings(frame_interval=10))

    assert run.time_ps == pytest.approx((0.0, 0.005, 0.01, 0.015))
    assert len(run.temperature_k) == len(run.total_energy_ev) == 4
    assert run.temperature_k[-1] > 0
    system = md_system(cell, cutoff=5.0)
    [stored] = [row.to_json() for row in md_reports(_stability(run), system)]
    assert (stored["run"], stored["structure"], stored["n_atoms"]) == ("constant", "Au6Cu2", 32)
    assert stored["time_ps"] == list(run.time_ps)
    assert stored["energy_ev"] == pytest.approx(list(run.total_energy_ev))


def _stability(run):
    from core.evaluation.md import MDStability

    return MDStability((run,))


def test_traces_are_thinned_to_a_bounded_number_of_points_keeping_both_ends() -> None:
    points = list(range(5001))

    thinned = _thinned(points, 200)

    assert len(thinned) == 200
    assert thinned[0] == 0 and thinned[-1] == 5000


def test_the_report_draws_stored_md_traces() -> None:
    run = {
        "run": "constant_100K",
        "structure": "Cu4",
        "stable": True,
        "survived_ps": 0.2,
        "total_ps": 0.2,
        "time_ps": [0.0, 0.1, 0.2],
        "temperature_K": [100.0, 110.0, 95.0],
        "energy_ev": [-10.0, -10.01, -9.99],
    }

    html = render_html({"title": "t", "md": [run]})

    assert "MD traces" in html and html.count("<img") == 1


def _curve() -> list[dict]:
    entries = []
    for epoch in range(6):
        entries.append(
            {
                "epoch": epoch,
                "head": "target",
                "loss": 0.33 - 0.01 * epoch,
                "valid_forces_rmse_mev_per_a": 31.0 - epoch,
            }
        )
        entries.append(
            {
                "epoch": epoch,
                "head": "replay",
                "loss": 1e-16 * (1 + epoch),
                "valid_forces_rmse_mev_per_a": 1e-13 * (1 + epoch),
            }
        )
    return entries  # fmt: skip


def test_learning_curves_have_one_panel_per_head_with_distinct_readable_ticks() -> None:
    figure = learning_curve_figure(_curve())
    figure.canvas.draw()

    axes = [ax for ax in figure.axes if ax.get_visible()]
    titles = [ax.get_title() for ax in axes]
    assert len(axes) == 4
    assert any("target" in title for title in titles) and any("replay" in t for t in titles)
    for ax in axes:
        assert ax.get_yscale() == "log"
        labels = [label.get_text() for label in ax.get_yticklabels() if label.get_text()]
        assert len(labels) >= 2
        assert len(set(labels)) == len(labels), labels
    target_loss = axes[titles.index("Validation loss · target")]
    low, high = target_loss.get_ylim()
    assert low > 0.1  # not flattened by the replay head's 1e-16


def test_offset_free_energy_error_ignores_a_per_element_shift() -> None:
    configs = generate_target_dataset(12, seed=5, system="molecules")
    reference = np.array([atoms.get_potential_energy() for atoms in configs])
    counts = {"H": 0.7, "C": -3.0, "N": 1.1, "O": 2.0}
    shift = np.array([sum(counts[s] for s in atoms.get_chemical_symbols()) for atoms in configs])

    assert offset_free_energy_rmse(configs, reference + shift, reference) == pytest.approx(
        0.0, abs=1e-6
    )


def test_forgetting_energy_ratio_of_a_model_that_only_changed_its_e0s_is_one(demo_foundation):
    foundation = torch.load(demo_foundation, map_location="cpu", weights_only=False)
    from ase.data import chemical_symbols

    shifted = with_e0s(
        foundation,
        {chemical_symbols[z]: e0 + 3.0 for z, e0 in model_e0s(foundation).items()},
    )
    replay = generate_target_dataset(8, seed=9)

    result = forgetting(foundation, shifted, replay)

    raw = result.fine_tuned.energy_rmse_mev_per_atom / result.foundation.energy_rmse_mev_per_atom
    assert abs(raw - 1) > 0.5  # the shift alone looks like forgetting (or its opposite)
    assert result.energy_offset_removed.ratio == pytest.approx(1.0, rel=1e-3)


def test_the_report_compares_forgetting_energies_without_the_offset_and_says_so() -> None:
    forgetting_section = {
        "foundation": {"energy_rmse_mev_per_atom": 10.0, "forces_rmse_mev_per_a": 50.0},
        "finetuned": {"energy_rmse_mev_per_atom": 440.0, "forces_rmse_mev_per_a": 60.0},
        "force_rmse_ratio": 1.2,
        "energy_offset_removed": {
            "foundation_mev_per_atom": 9.0,
            "fine_tuned_mev_per_atom": 12.0,
            "ratio": 12.0 / 9.0,
        },
    }

    html = render_html({"title": "t", "forgetting": forgetting_section})

    assert "44.0×" not in html
    assert "per-element offset removed" in html
    assert "1.33×" in html
