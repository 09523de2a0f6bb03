"""A sweep's page: its comparison table, the recommendation and the accuracy-versus-forgetting
plot (served by GET /sweeps/{id}/report)."""

from collections.abc import Sequence
from typing import Any

import matplotlib

from core.reporting.figures import (
    FIGURE_STYLE,
    embed_figure,
    mathtext_literal,
    panel_grid,
)
from core.reporting.markup import (
    Html,
    esc,
    html_page,
    html_section,
    html_table,
    table_columns,
)
from core.reporting.sweep_models import (
    SweepEarlyStopping,
    SweepRecommendation,
    SweepRow,
    SweepSummary,
)
from core.reporting.verdicts import number_text

SWEEP_COLUMNS = table_columns(
    SweepRow,
    (
        ("strategy", "Strategy", ""),
        ("lr", "lr", ""),
        ("lora_rank", "LoRA rank", ""),
        ("train_fraction", "Train fraction", ""),
        ("state", "State", ""),
        ("test_energy_rmse_mev_per_atom", "Test E RMSE", "meV/atom"),
        ("test_forces_rmse_mev_per_a", "Test F RMSE", "meV/Å"),
        ("forgetting_ratio", "Forgetting", "×"),
        ("md_stable", "MD stable", ""),
        ("rdf_emd_mean", "RDF EMD", ""),
        ("dimer_holes", "Holes", ""),
        ("rss_hole_rate", "RSS hole rate", ""),
        ("trainable_fraction", "Trainable", ""),
        ("wall_time_s", "Wall time", "s"),
    ),
)


def render_sweep_html(summary: dict[str, Any] | SweepSummary) -> str:
    """A sweep's comparison table, its recommendation and accuracy-versus-forgetting plot."""
    sweep = SweepSummary.from_json(summary if isinstance(summary, dict) else summary.to_json())
    rows = sweep.table
    with matplotlib.rc_context(FIGURE_STYLE):
        body = "".join(
            [
                Html(f"<h1>Sweep {esc(sweep.id)}</h1>"),
                _recommendation(sweep.recommendation or SweepRecommendation()),
                _early_stopping(sweep.early_stopping),
                html_section(
                    "Comparison",
                    html_table(
                        [name + (f" ({unit})" if unit else "") for _, name, unit in SWEEP_COLUMNS],
                        [_sweep_cells(row) for row in rows],
                    ),
                    _sweep_gaps(rows),
                ),
                _sweep_figure(rows),
            ]
        )
    return html_page(f"Sweep {sweep.id}", body)


# The evaluation section each measured column comes from (EvaluationSections.not_measured).
SWEEP_COLUMN_SECTIONS = {
    "test_energy_rmse_mev_per_atom": "accuracy",
    "test_forces_rmse_mev_per_a": "accuracy",
    "forgetting_ratio": "forgetting",
    "md_stable": "md",
    "rdf_emd_mean": "md",
    "dimer_holes": "dimers",
    "rss_hole_rate": "rss_holes",
}


def _sweep_cells(row: SweepRow) -> list[str]:
    missing = row.not_measured or {}
    return [
        "not measured"
        if getattr(row, key) is None and SWEEP_COLUMN_SECTIONS.get(key) in missing
        else _sweep_cell(getattr(row, key))
        for key, _, _ in SWEEP_COLUMNS
    ]


def _sweep_gaps(rows: list[SweepRow]) -> str:
    """Why a job's cells are empty: not measured (with the reason), or the job failed."""
    items = [
        f"<li>{esc(row.strategy)} ({esc((row.job_id or '')[:8])}): {esc(text)}</li>"
        for row in rows
        for text in [f"{k} not measured: {v}" for k, v in (row.not_measured or {}).items()]
        + ([f"{row.state}: {row.error}"] if row.error else [])
    ]
    return f"<p>Missing numbers:</p><ul>{''.join(items)}</ul>" if items else ""


def _sweep_cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    return number_text(value) if isinstance(value, float) else str(value)


def _recommendation(recommendation: SweepRecommendation) -> str:
    items = [
        f"<li><b>{esc(use)}</b>: {esc(choice.strategy or 'undecided')} — "
        f"{esc(choice.reason or '')}</li>"
        for use, choice in (
            ("One target system", recommendation.single_system),
            ("Broad use", recommendation.broad_use),
        )
        if choice
    ]
    return html_section("Recommendation", f"<ul>{''.join(items)}</ul>") if items else ""


def _early_stopping(halving: SweepEarlyStopping | None) -> str:
    if halving is None or halving.rule is None:
        return ""
    stopped = "".join(
        f"<li>{esc(job.strategy or '')} ({esc(job.job_id)}): {esc(job.reason or '')}</li>"
        for job in halving.stopped
    )
    listed = f"<ul>{stopped}</ul>" if stopped else "<p>No job was stopped.</p>"
    return html_section("Stopped early", f"<p>{esc(halving.rule)}</p>{listed}")


# Labels nearer than this (points, about one line of 7 pt text) are stacked apart.
LABEL_SPACING_PT = 9.0


def label_offsets(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Offsets (typographic points) for the labels of scatter `points` (also in points on the
    page), so that labels of coinciding or close points stack upwards instead of overprinting."""
    placed: list[tuple[float, float]] = []
    offsets = []
    for x, y in points:
        dy = 3.0
        while any(
            abs(x - px) < 6 * LABEL_SPACING_PT and abs(y + dy - py) < LABEL_SPACING_PT
            for px, py in placed
        ):
            dy += LABEL_SPACING_PT
        placed.append((x, y + dy))
        offsets.append((3.0, dy))
    return offsets


def _point_label(row: SweepRow, varying: set[str]) -> str:
    """The strategy, and the grid values that tell its points apart."""
    parts = [str(row.strategy)]
    if "lora_rank" in varying and row.lora_rank is not None:
        parts.append(f"r{row.lora_rank}")
    if "lr" in varying and row.lr is not None:
        parts.append(f"lr {row.lr:g}")
    if "train_fraction" in varying and row.train_fraction is not None:
        parts.append(f"{row.train_fraction:g} of data")
    return " ".join(parts)


def _grid_keys(rows: list[SweepRow]) -> set[str]:
    """The settings that differ between jobs of one strategy (a sweep's grid)."""
    return {
        key
        for key in ("lr", "lora_rank", "train_fraction")
        for strategy in {row.strategy for row in rows}
        if len({getattr(row, key) for row in rows if row.strategy == strategy}) > 1
    }


def _sweep_figure(rows: list[SweepRow]) -> str:
    scored = [
        (row, accuracy) for row in rows if (accuracy := row.test_forces_rmse_mev_per_a) is not None
    ]
    if not scored:
        return ""
    points = [row for row, _ in scored]
    figure, (axes,) = panel_grid(1)
    xy: list[tuple[float, float]] = []
    for row, accuracy in scored:
        forgetting = row.forgetting_ratio
        y = forgetting if forgetting is not None else 1.0
        axes.scatter(accuracy, y, marker="o" if forgetting else "x")
        xy.append((accuracy, y))
    # Axis limits fixed first, so label positions are computed in the final display space.
    figure.canvas.draw()
    per_point = 72 / figure.dpi
    offsets = label_offsets(
        [(px * per_point, py * per_point) for px, py in axes.transData.transform(xy)]
    )
    varying = _grid_keys(points)
    for row, point, offset in zip(points, xy, offsets, strict=True):
        axes.annotate(
            mathtext_literal(_point_label(row, varying)),
            point,
            xytext=offset,
            textcoords="offset points",
            fontsize=7,
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#999999"}
            if offset[1] > 3.0
            else None,
        )
    axes.set_xlabel("test force RMSE (meV/Å)")
    axes.set_ylabel("forgetting ratio (×)")
    return html_section(
        "Accuracy versus forgetting",
        embed_figure(
            figure, "Each job: target accuracy (x) against retained foundation accuracy (y)"
        ),
    )
