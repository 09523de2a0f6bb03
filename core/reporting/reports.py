"""A job's report as one self-contained HTML page: key facts, verdicts, tables and figures.

The page is built from the HTML parts of core.reporting.markup and the figures of
core.reporting.figures; the sections on simulations (MD, RDFs, dimers, random structure search)
are in core.reporting.simulation_sections.

Units follow the report's keys (meV/atom, meV/Å, ps, K, eV); parity values are in eV/atom and eV/Å,
as models predict them, and their errors are shown in meV.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import (
    MaxNLocator,
)

from core.reporting.e0_table import E0_COLUMNS, e0_rows
from core.reporting.figures import (
    FIGURE_STYLE,
    REFERENCE_COLOUR,
    embed_figure,
    head_colour,
    mathtext_literal,
    panel_grid,
    readable_log_ticks,
)
from core.reporting.markup import (
    Html,
    badge,
    count_text,
    duration_text,
    esc,
    html_page,
    html_section,
    html_table,
    pass_fail,
    plain_text,
    table_columns,
    when_text,
)
from core.reporting.report_models import (
    AccuracyReport,
    E0sReport,
    EpochReport,
    ErrorMetricsReport,
    EvaluationReport,
    JobFacts,
    JobReport,
    ParityReport,
    ReplayErrors,
    field_name,
    is_measured,
)
from core.reporting.simulation_sections import (
    dimers_section,
    md_section,
    rdf_section,
    rss_section,
)
from core.reporting.verdicts import number_text, report_verdicts

# Columns of the accuracy and forgetting tables: fields of ErrorMetricsReport.
METRICS = table_columns(
    ErrorMetricsReport,
    (
        ("energy_rmse_mev_per_atom", "Energy RMSE", "meV/atom"),
        ("energy_mae_mev_per_atom", "Energy MAE", "meV/atom"),
        ("forces_rmse_mev_per_a", "Force RMSE", "meV/Å"),
        ("forces_mae_mev_per_a", "Force MAE", "meV/Å"),
        ("stress_rmse_mev_per_a3", "Stress RMSE", "meV/Å³"),
    ),
)
# Checks are free-form; these are the keys jobs use to state a check's verdict.
VERDICT_KEYS = ("passed", "ok", "verified", "unchanged")


def render_html(report: dict[str, Any] | JobReport | EvaluationReport) -> str:
    """The report as one HTML page; sections whose data are missing or None are left out."""
    parsed = JobReport.from_json(report if isinstance(report, dict) else report.to_json())
    with matplotlib.rc_context(FIGURE_STYLE):
        body = "".join(
            render_section(parsed)
            for render_section in (
                _header,
                _attention,
                _checks_section,
                _e0s_section,
                _learning_section,
                _accuracy_section,
                _forgetting_section,
                md_section,
                rdf_section,
                dimers_section,
                rss_section,
                _not_measured_section,
            )
        )
    return html_page(parsed.title or "Fine-tuning report", body)


# ---- header and verdicts ---------------------------------------------------------------------


def _header(report: JobReport) -> Html:
    title = esc(report.title or "Fine-tuning report")
    generated = report.generated_at
    stamp = f'<div class="muted">generated {esc(when_text(generated))}</div>' if generated else ""
    job = report.job
    facts = _job_facts(job) + _hyperparameters(job) if job and is_measured(job) else ""
    return Html(f"<header><h1>{title}</h1>{stamp}{facts}{_verdicts(report)}</header>")


def _job_facts(job: JobFacts) -> str:
    facts = [
        ("Job", job.id),
        ("State", job.state),
        ("Strategy", job.strategy),
        ("Foundation", job.foundation_model),
        ("Train data", job.train_dataset),
        ("Test data", job.test_dataset),
        ("Created", job.created_at and when_text(job.created_at)),
        ("Started", job.started_at and when_text(job.started_at)),
        ("Finished", job.finished_at and when_text(job.finished_at)),
        ("Queued", duration_text(job.created_at, job.started_at)),
        ("Duration", duration_text(job.started_at, job.finished_at)),
    ]
    items = "".join(
        f"<div><dt>{esc(name)}</dt><dd>{esc(value)}</dd></div>"
        for name, value in facts
        if value is not None
    )
    return f'<dl class="facts">{items}</dl>'


def _hyperparameters(job: JobFacts) -> str:
    settings = job.effective_hyperparameters
    if not settings:
        return ""
    rows = [(name, plain_text(value)) for name, value in settings.items()]
    return (
        f"<details><summary>Effective hyperparameters ({len(rows)})</summary>"
        f"{html_table(('Setting', 'Value'), rows)}</details>"
    )


def _verdicts(report: JobReport) -> str:
    badges = report_verdicts(report.to_json())
    if not badges:
        return ""
    return f'<div class="verdicts">{"".join(badge(b) for b in badges)}</div>'


# ---- warnings and checks ---------------------------------------------------------------------


def _check_passed(value: Any) -> bool | None:
    """True or False where the check states a verdict; None for checks that only record a value."""
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        verdicts = [value[key] for key in VERDICT_KEYS if isinstance(value.get(key), bool)]
        return all(verdicts) if verdicts else None
    return None


def _checks(report: JobReport) -> dict[str, Any]:
    # Checks are free-form beyond the few JobChecks names: shown as stored.
    return report.checks.to_json() if report.checks else {}


def _attention(report: JobReport) -> str:
    warnings = report.warnings or []
    checks = _checks(report)
    failed = [name for name, value in checks.items() if _check_passed(value) is False]
    boxes = []
    if failed:
        items = "".join(
            f"<li><b>{esc(name)}</b> {esc(plain_text(checks[name]))}</li>" for name in failed
        )
        boxes.append(f'<div class="alert bad"><b>Failed checks</b><ul>{items}</ul></div>')
    if warnings:
        items = "".join(f"<li>{esc(text)}</li>" for text in warnings)
        boxes.append(f'<div class="alert warn"><b>Warnings</b><ul>{items}</ul></div>')
    return html_section("Needs attention", *boxes) if boxes else ""


def _checks_section(report: JobReport) -> str:
    checks = _checks(report)
    if not checks:
        return ""
    rows = []
    for name, value in checks.items():
        passed = _check_passed(value)
        shown = number_text(value) if isinstance(value, float) else plain_text(value)
        rows.append((name, "—" if passed is None else pass_fail(passed), shown))
    return html_section("Checks", html_table(("Check", "Result", "Details"), rows, numeric_from=3))


# ---- E0s -------------------------------------------------------------------------------------


def _e0s_section(report: JobReport) -> str:
    e0s = report.e0s
    if e0s is None or not is_measured(e0s):
        return ""
    summary = (
        f"<p>Method <b>{esc(e0s.method or '—')}</b> · fitted on "
        f"{esc(count_text(e0s.n_configs))} configurations"
        + (f" · rank {esc(count_text(e0s.rank))}" if e0s.rank is not None else "")
        + "</p>"
    )
    rmse = html_table(
        ("", "Foundation E0s", "Chosen E0s"),
        [
            (
                "Energy RMSE on training data (meV/atom)",
                number_text(e0s.energy_rmse_before),
                number_text(e0s.energy_rmse_after),
            )
        ],
    )
    return html_section("Reference energies (E0s)", summary, rmse, _e0s_table(e0s))


def _e0s_table(e0s: E0sReport) -> str:
    rows = e0_rows(e0s)
    columns = [
        (title, key)
        for title, key in E0_COLUMNS
        if key in ("element", "e0", "method") or any(row[key] is not None for row in rows)
    ]
    return html_table(
        [title for title, _ in columns],
        [[_ev(row[key]) if key not in ("element", "method") else row[key] for _, key in columns]
         for row in rows],
    )  # fmt: skip


def _not_measured_section(report: JobReport) -> str:
    if not report.not_measured:
        return ""
    return html_section(
        "Not measured",
        "<p>These sections could not run; the model was delivered and the job succeeded with "
        "the others.</p>",
        html_table(("Section", "Reason"), list(report.not_measured.items()), numeric_from=2),
    )


def _ev(value: float | None) -> str:
    # E0s are large and differ from the foundation's in the third decimal; keep meV resolution.
    return "—" if value is None else f"{value:.4f}"


# ---- learning curves -------------------------------------------------------------------------


LEARNING_PANELS = (
    (field_name(EpochReport, "loss"), "Validation loss"),
    (field_name(EpochReport, "valid_energy_rmse_mev_per_atom"), "Energy RMSE (meV/atom)"),
    (field_name(EpochReport, "valid_forces_rmse_mev_per_a"), "Force RMSE (meV/Å)"),
)


def _learning_section(report: JobReport) -> str:
    curve = report.learning_curve
    figure = _learning_figure(curve) if curve else ""
    return html_section("Learning curves", figure) if figure else ""


def _learning_figure(curve: list[EpochReport]) -> str:
    figure = learning_curve_figure(curve)
    if figure is None:
        return ""
    return embed_figure(
        figure, "Validation errors per epoch, one row of panels per head (log scale)"
    )


def learning_curve_figure(curve: Sequence[EpochReport | dict[str, Any]]) -> Figure | None:
    """One panel per head and quantity: a replay head near 1e-16 would flatten the target
    head's curve on a shared axis."""
    epochs = [EpochReport.from_json(entry) for entry in curve]
    heads = list(dict.fromkeys(_head_of(entry) for entry in epochs))
    panels = [
        (head, key, title)
        for head in heads
        for key, title in LEARNING_PANELS
        if _head_series(epochs, head, key)
    ]
    if not panels:
        return None
    columns = max(sum(1 for head, _, _ in panels if head == first) for first in heads)
    figure, axes = panel_grid(len(panels), columns=columns)
    for ax, (head, key, title) in zip(axes, panels, strict=True):
        x, y = zip(*_head_series(epochs, head, key), strict=True)
        ax.plot(x, y, marker="o", ms=3, color=head_colour(head, heads.index(head)))
        name = f"{title} · {head}" if len(heads) > 1 else title
        ax.set(yscale="log", title=mathtext_literal(name), xlabel="epoch (−1: before training)")
        readable_log_ticks(ax, y)
    return figure


def _head_of(entry: EpochReport) -> str:
    return entry.head or "validation"


def _head_series(curve: list[EpochReport], head: str, key: str) -> list[tuple[int, float]]:
    # mace evaluates once before the first epoch and logs it with epoch None.
    return sorted(
        (-1 if entry.epoch is None else entry.epoch, getattr(entry, key))
        for entry in curve
        if _head_of(entry) == head and _positive(getattr(entry, key))
    )


def _positive(value: Any) -> bool:
    return value is not None and value > 0


# ---- accuracy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityQuantity:
    key: str
    title: str
    unit: str
    rmse_key: str
    error_unit: str


PARITY_QUANTITIES = (
    # Relative to each composition's mean reference (core.evaluation.accuracy.ParityData).
    ParityQuantity(
        field_name(ParityReport, "energy_per_atom"),
        "Energy per atom − composition mean",
        "eV/atom",
        field_name(ErrorMetricsReport, "energy_rmse_mev_per_atom"),
        "meV/atom",
    ),
    ParityQuantity(
        field_name(ParityReport, "forces"),
        "Force components",
        "eV/Å",
        field_name(ErrorMetricsReport, "forces_rmse_mev_per_a"),
        "meV/Å",
    ),
    ParityQuantity(
        field_name(ParityReport, "stress"),
        "Stress components",
        "eV/Å³",
        field_name(ErrorMetricsReport, "stress_rmse_mev_per_a3"),
        "meV/Å³",
    ),
)


def _accuracy_section(report: JobReport) -> str:
    accuracy = report.accuracy
    if not accuracy:
        return ""
    parts = []
    for label, metrics in accuracy.items():
        parts.append(f"<h3>{esc(label)} · {esc(count_text(metrics.n_configs))} configurations</h3>")
        parts.append(_metrics_table(metrics))
        if metrics.worse_than_zero:
            worse = ", ".join(metrics.worse_than_zero)
            parts.append(
                f'<p class="bad"><b>Worse than predicting zero:</b> {esc(worse)} (RMSE above '
                "the labels' own RMS)</p>"
            )
        parts.append(_accuracy_figure(label, metrics))
    return html_section("Accuracy", *parts)


def _metrics_table(metrics: AccuracyReport) -> str:
    subsets: dict[str, ErrorMetricsReport] = {"all": metrics} | metrics.per_config_type
    columns = [
        (key, name, unit)
        for key, name, unit in METRICS
        if any(getattr(row, key) is not None for row in subsets.values())
    ]
    headers = ["Config type", "Configs"] + [f"{name} ({unit})" for _, name, unit in columns]
    rows = [
        [name, count_text(row.n_configs)]
        + [number_text(getattr(row, key)) for key, _, _ in columns]
        for name, row in subsets.items()
    ]
    return html_table(headers, rows)


def _accuracy_figure(label: str, metrics: AccuracyReport) -> str:
    parity = metrics.parity or ParityReport()
    plotted = [
        (quantity, values)
        for quantity in PARITY_QUANTITIES
        if (values := getattr(parity, quantity.key)) is not None and values.reference
    ]
    if not plotted:
        return ""
    figure, axes = panel_grid(2 * len(plotted))
    for (quantity, values), parity_ax, error_ax in zip(plotted, axes[::2], axes[1::2], strict=True):
        reference = np.asarray(values.reference, dtype=float)
        predicted = np.asarray(values.predicted, dtype=float)
        rmse = number_text(getattr(metrics, quantity.rmse_key), quantity.error_unit)
        _parity_panel(parity_ax, reference, predicted, quantity, rmse)
        _error_histogram(error_ax, (predicted - reference) * 1e3, quantity)
    return embed_figure(figure, f"{label}: predicted vs reference, and the distribution of errors")


def _parity_panel(
    ax: Axes, reference: np.ndarray, predicted: np.ndarray, quantity: ParityQuantity, rmse: str
) -> None:
    low = float(min(reference.min(), predicted.min()))
    high = float(max(reference.max(), predicted.max()))
    ax.plot([low, high], [low, high], color=REFERENCE_COLOUR, lw=0.8, ls="--", zorder=1)
    # Few points are drawn large enough to see; many small, so their density shows.
    size = 14 if reference.size < 1000 else 3
    ax.scatter(reference, predicted, s=size, alpha=0.6, linewidths=0, rasterized=True, zorder=2)
    ax.set(
        title=quantity.title,
        xlabel=f"reference ({quantity.unit})",
        ylabel=f"predicted ({quantity.unit})",
        aspect="equal",
    )
    ax.text(0.04, 0.94, f"RMSE {rmse}", transform=ax.transAxes, va="top")
    # Few ticks: long labels of a narrow range otherwise run into each other.
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=4))


def _error_histogram(ax: Axes, errors: np.ndarray, quantity: ParityQuantity) -> None:
    many = errors.size >= 500
    # With many errors a log count axis shows the tail of large ones, which a linear axis flattens.
    ax.hist(errors, bins=50 if many else 20, color="#7f7f7f", log=many)
    ax.axvline(0.0, color=REFERENCE_COLOUR, lw=0.8, ls="--")
    ax.set(
        title=f"{quantity.title} error",
        xlabel=f"predicted − reference ({quantity.error_unit})",
        ylabel="count",
    )


# ---- forgetting ------------------------------------------------------------------------------


def _forgetting_section(report: JobReport) -> str:
    forgetting = report.forgetting
    if forgetting is None or not is_measured(forgetting):
        return ""
    foundation = forgetting.foundation or ReplayErrors()
    finetuned = forgetting.finetuned or ReplayErrors()
    offset_free = forgetting.energy_offset_removed
    if not is_measured(offset_free):
        offset_free = None
    rows = [
        (
            f"{name} ({unit})",
            number_text(getattr(foundation, key)),
            number_text(getattr(finetuned, key)),
            # Raw energy errors differ by the E0 shift between the two references, which is no
            # forgetting: their ratio is given after removing it (the row below).
            "—"
            if offset_free and key.startswith("energy_")
            else _ratio(getattr(finetuned, key), getattr(foundation, key)),
        )
        for key, name, unit in METRICS
        if getattr(foundation, key) is not None or getattr(finetuned, key) is not None
    ]
    note = ""
    if offset_free:
        rows.append(
            (
                "Energy RMSE, per-element offset removed (meV/atom)",
                number_text(offset_free.foundation_mev_per_atom),
                number_text(offset_free.fine_tuned_mev_per_atom),
                _ratio(
                    offset_free.fine_tuned_mev_per_atom,
                    offset_free.foundation_mev_per_atom,
                ),
            )
        )
        note = (
            "<p>Energies are compared after removing each model's least-squares per-element "
            "offset: the fine-tuned model carries the E0s of the new reference, and that shift "
            "is not forgetting.</p>"
        )
    dataset = getattr(forgetting, "dataset", None) or "the replay data"
    intro = (
        f"<p>Errors on <b>{esc(dataset)}</b> before and "
        "after fine-tuning; a ratio above 1 means the model got worse there.</p>"
    )
    return html_section(
        "Forgetting",
        intro,
        html_table(("Metric", "Foundation", "Fine-tuned", "Fine-tuned / foundation"), rows),
        note,
    )


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "—"
    return f"{number_text(numerator / denominator)}×"
