"""Issue 21 item 3: sweeps judge holes against the foundation's own, and label every point."""

import torch

from core.data.demo_data import generate_target_dataset
from core.evaluation.suite import EvaluationData, evaluate_model
from core.reporting.sweep_page import label_offsets, render_sweep_html
from core.science.spec import EvaluationSettings
from core.service.models import Job, JobState
from core.workflows.sweeps import comparison_row, recommend


def job_with(holes: list[str], foundation_holes: list[str] | None, ratio: float) -> Job:
    dimers = {
        "holes": holes,
        "pairs": {pair: {"hole": pair in holes} for pair in ("Cu-Cu", "Cu-Ni", "Ni-Ni")},
        "compression": [],
    }
    if foundation_holes is not None:
        dimers["foundation_holes"] = foundation_holes
    return Job(
        id=f"job-{ratio}",
        state=JobState.SUCCEEDED,
        spec={"strategy": {"name": f"s{ratio}"}, "train_fraction": 1.0},
        metrics={
            "accuracy": {"test": {"forces_rmse_mev_per_a": 10.0 * ratio}},
            "forgetting": {"force_rmse_ratio": ratio},
            "dimers": dimers,
            "md": [{"stable": True}],
        },
        warnings=[],
    )


def test_holes_inherited_from_the_foundation_do_not_leave_broad_use_undecided() -> None:
    rows = [comparison_row(job_with(["Cu-Cu"], ["Cu-Cu"], ratio)) for ratio in (3.0, 1.5, 8.0)]

    choice = recommend(rows)["broad_use"]

    assert rows[0]["dimer_holes"] == 1 and rows[0]["new_dimer_holes"] == 0
    assert choice["strategy"] == "s1.5"
    assert "1.5" in choice["reason"]


def test_a_hole_the_foundation_lacks_still_rules_a_job_out() -> None:
    rows = [
        comparison_row(job_with(["Cu-Cu", "Ni-Ni"], ["Cu-Cu"], 1.5)),
        comparison_row(job_with(["Cu-Cu"], ["Cu-Cu"], 3.0)),
    ]

    assert recommend(rows)["broad_use"]["strategy"] == "s3.0"


def test_undecided_says_why_when_forgetting_was_measured() -> None:
    rows = [comparison_row(job_with(["Ni-Ni"], [], 1.5))]

    reason = recommend(rows)["broad_use"]["reason"]

    assert "no forgetting was measured" not in reason
    assert "dimer holes its foundation lacks" in reason


def test_the_evaluation_records_the_foundations_own_holes(demo_foundation) -> None:
    foundation = torch.load(demo_foundation, map_location="cpu", weights_only=False)
    molecules = generate_target_dataset(2, seed=3, system="molecules")

    report = evaluate_model(
        foundation,
        EvaluationData(test=molecules),
        EvaluationSettings(md=False),
        foundation=foundation,
    )

    assert report["dimers"]["foundation_holes"] == report["dimers"]["holes"]


def test_labels_of_coinciding_points_are_stacked_apart() -> None:
    offsets = label_offsets([(100.0, 100.0), (100.0, 100.0), (100.0, 100.0), (400.0, 50.0)])

    assert len({offset for offset in offsets[:3]}) == 3
    assert offsets[3] == offsets[0]


def test_the_sweep_plot_renders_with_overlapping_points() -> None:
    rows = [
        {"strategy": name, "test_forces_rmse_mev_per_a": 10.0, "forgetting_ratio": 2.0, "lr": lr}
        for name, lr in (("naive", 1e-3), ("naive", 1e-2), ("lora", 1e-2))
    ]

    html = render_sweep_html({"id": "s", "table": rows, "recommendation": {}})

    assert html.count("<img") == 1


def test_a_lone_survivor_is_not_crowned_silently() -> None:
    # Issue 25: two jobs failed or could not be measured; the recommendation says so and cites
    # the one number it had.
    measured = comparison_row(job_with([], [], 4.0))
    unmeasured = job_with([], [], 2.0)
    unmeasured.id = "job-unmeasured"
    del unmeasured.metrics["forgetting"]
    unmeasured.metrics["not_measured"] = {"forgetting": "the fine-tuned model does not know Pd"}
    failed = Job(
        id="job-failed",
        state=JobState.FAILED,
        spec={"strategy": {"name": "lora"}, "train_fraction": 1.0},
        metrics=None,
        warnings=[],
        error="internal error: out of disk",
    )
    rows = [measured, comparison_row(unmeasured), comparison_row(failed)]

    broad = recommend(rows)["broad_use"]

    assert broad["strategy"] == "s4.0"
    assert "s4.0 (job-4.0) 4" in broad["reason"]
    assert "the only job compared" in broad["reason"]
    assert "not measured: the fine-tuned model does not know Pd" in broad["reason"]
    assert "lora (job-fail) failed: internal error: out of disk" in broad["reason"]
    assert rows[1]["not_measured"] == {"forgetting": "the fine-tuned model does not know Pd"}
    html = render_sweep_html({"id": "s", "table": rows, "recommendation": recommend(rows)})
    assert "not measured" in html and "out of disk" in html
