"""The edge budget from a device's memory and the batch-size pick, on given numbers (issue 27)."""

import pytest

from core.science.edge_budget import (
    DEFAULT_BYTES_PER_EDGE,
    SAFETY_MARGIN,
    CurvePoint,
    bytes_per_edge,
    choose_edge_budget,
    pick_batch_size,
)

GB = 2**30


def test_a_gpu_budget_plans_the_free_memory_with_the_margin_and_the_measured_edge_cost() -> None:
    budget = choose_edge_budget(
        device="cuda", default_edges=30_000, free_bytes=100 * GB, bytes_per_edge=100_000
    )

    training_edges = SAFETY_MARGIN * 100 * GB / 100_000
    assert budget.source == "device_memory"
    assert budget.edges == int(training_edges / 0.5)
    assert "measured by the cost probe" in budget.reason
    assert budget.free_memory_mb == pytest.approx(100 * 1024)


def test_the_setting_overrides_the_device_and_the_cpu_keeps_its_default() -> None:
    assert (
        choose_edge_budget(
            device="cuda", default_edges=30_000, override=5_000, free_bytes=100 * GB
        ).edges
        == 5_000
    )
    cpu = choose_edge_budget(device="cpu", default_edges=30_000, free_bytes=100 * GB)
    assert (cpu.edges, cpu.source) == (30_000, "cpu_default")


def test_a_job_sharing_a_gpu_plans_within_its_reservation_and_never_below_the_default() -> None:
    shared = choose_edge_budget(
        device="cuda:0",
        default_edges=30_000,
        free_bytes=100 * GB,
        bytes_per_edge=DEFAULT_BYTES_PER_EDGE,
        reserved_bytes=10 * GB,
    )
    tiny = choose_edge_budget(
        device="cuda",
        default_edges=30_000,
        free_bytes=GB // 4,
        bytes_per_edge=DEFAULT_BYTES_PER_EDGE,
    )

    assert shared.edges == int(SAFETY_MARGIN * 10 * GB / DEFAULT_BYTES_PER_EDGE / 0.5)
    assert "reserved for this job" in shared.reason
    assert tiny.edges == 30_000


def test_bytes_per_edge_is_the_growth_above_the_baseline() -> None:
    assert bytes_per_edge(3_000_000, 1_000_000, 1_000) == 2_000
    assert bytes_per_edge(1_000_000, 1_000_000, 1_000) is None


def test_the_pick_stops_at_the_plateau() -> None:
    curve = [
        CurvePoint(1, 500, 0.01),
        CurvePoint(2, 900, 0.02),
        CurvePoint(4, 1500, 0.04),
        CurvePoint(8, 1550, 0.08),
        CurvePoint(16, 1560, 0.16),
    ]

    pick = pick_batch_size(curve)

    assert pick.batch_size == 4
    assert "plateau" in pick.reason


def test_the_pick_stops_at_half_the_memory_when_that_comes_first() -> None:
    curve = [CurvePoint(4, 1000, 0.2), CurvePoint(8, 1900, 0.55), CurvePoint(16, 3600, 0.9)]

    assert pick_batch_size(curve).batch_size == 8


def test_a_curve_still_climbing_picks_its_largest_batch() -> None:
    curve = [CurvePoint(1, 100, 0.01), CurvePoint(2, 190, 0.02)]

    assert pick_batch_size(curve).batch_size == 2
