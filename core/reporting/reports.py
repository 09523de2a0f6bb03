"""A job's report as one self-contained HTML page: key facts, verdicts, tables and figures.

Figures are PNGs embedded as base64, so the file opens offline and can be mailed as it is. They are
drawn on matplotlib `Figure` objects with the Agg canvas, never through pyplot, whose global figure
registry is not safe in a worker that renders several reports.

Units follow the report's keys (meV/atom, meV/Å, ps, K, eV); parity values are in eV/atom and eV/Å,
as models predict them, and their errors are shown in meV.
"""

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedFormatter,
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from core.reporting.e0_table import E0_COLUMNS, e0_rows
from core.reporting.report_models import (
    AccuracyReport,
    CompressionCurveReport,
    DimerCurveReport,
    E0sReport,
    EpochReport,
    ErrorMetricsReport,
    EvaluationReport,
    JobFacts,
    JobReport,
    MDRunReport,
    ParityReport,
    RdfPairReport,
    ReplayErrors,
    RssRates,
    SweepEarlyStopping,
    SweepRecommendation,
    SweepRow,
    SweepSummary,
    field_name,
    is_measured,
)
from core.reporting.verdicts import Verdict, report_verdicts
from core.reporting.verdicts import number_text as _num

if TYPE_CHECKING:  # for mypy only: older matplotlib releases (>=3.8 allowed) lack RcKeyType
    from matplotlib.typing import RcKeyType

# Columns of the accuracy and forgetting tables: fields of ErrorMetricsReport.
METRICS = tuple(
    (field_name(ErrorMetricsReport, key), title, unit)
    for key, title, unit in (
        ("energy_rmse_mev_per_atom", "Energy RMSE", "meV/atom"),
        ("energy_mae_mev_per_atom", "Energy MAE", "meV/atom"),
        ("forces_rmse_mev_per_a", "Force RMSE", "meV/Å"),
        ("forces_mae_mev_per_a", "Force MAE", "meV/Å"),
        ("stress_rmse_mev_per_a3", "Stress RMSE", "meV/Å³"),
    )
)
# Checks are free-form; these are the keys jobs use to state a check's verdict.
VERDICT_KEYS = ("passed", "ok", "verified", "unchanged")
HEAD_COLOURS = {"target": "#1f77b4", "replay": "#ff7f0e"}
REFERENCE_COLOUR = "#333333"
HOLE_COLOUR = "#d62728"
# A dimer's repulsive wall spans orders of magnitude; cutting the view this far above the
# dissociation limit keeps the well, and any hole below it, readable.
DIMER_VIEW_ABOVE_TAIL_EV = 10.0

FIGURE_STYLE: "dict[RcKeyType, Any]" = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
PANEL_INCHES = (3.4, 2.7)
DPI = 110

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:1180px;
margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px}
.muted{color:#666;font-size:12px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:2px 20px;
margin:12px 0}.facts div{display:flex;gap:8px}.facts dt{color:#666;min-width:110px}
.facts dd{margin:0;font-weight:500;word-break:break-all}
.verdicts{display:flex;flex-wrap:wrap;gap:8px;margin:14px 0}
.badge{border-radius:6px;padding:6px 10px;border:1px solid;font-size:13px}
.badge b{display:block;font-size:16px}
.good{background:#e8f5e9;border-color:#66bb6a;color:#1b5e20}
.warn{background:#fff8e1;border-color:#ffb300;color:#7a4f00}
.bad{background:#ffebee;border-color:#e53935;color:#b71c1c}
.alert{border-left:5px solid;padding:8px 14px;margin:10px 0;border-radius:4px}
.alert ul{margin:4px 0;padding-left:20px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e5e5;text-align:left}
th{background:#f6f6f6;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:8px 0 16px}figure img{max-width:100%;height:auto}
figcaption{color:#666;font-size:12px}
details{margin:8px 0}summary{cursor:pointer;color:#444}
"""


class _Html(str):
    """Markup built here, safe to insert as is; any other string is escaped."""


def _esc(text: Any) -> _Html:
    return text if isinstance(text, _Html) else _Html(html.escape(str(text)))


def render_html(report: dict[str, Any] | JobReport | EvaluationReport) -> str:
    """The report as one HTML page; sections whose data are missing or None are left out."""
    parsed = JobReport.from_json(report if isinstance(report, dict) else report.to_json())
    with matplotlib.rc_context(FIGURE_STYLE):
        body = "".join(
            section(parsed)
            for section in (
                _header,
                _attention,
                _checks_section,
                _e0s_section,
                _learning_section,
                _accuracy_section,
                _forgetting_section,
                _md_section,
                _rdf_section,
                _dimers_section,
                _rss_section,
                _not_measured_section,
            )
        )
    title = _esc(parsed.title or "Fine-tuning report")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


# ---- formatting ------------------------------------------------------------------------------


def _count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _when(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M") + (f" {moment.tzname()}" if moment.tzinfo else "")


def _duration(start: str | None, end: str | None) -> str | None:
    if start is None or end is None:
        return None
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def _plain(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


# ---- HTML building blocks --------------------------------------------------------------------


def _section(title: str, *parts: str) -> _Html:
    return _Html(f"<section><h2>{_esc(title)}</h2>{''.join(parts)}</section>")


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> _Html:
    """Columns from `numeric_from` on are right-aligned, so digits line up."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=n' if i >= numeric_from else ''}>{_esc(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return _Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _badge(verdict: Verdict) -> str:
    label, value = _esc(verdict.label), _esc(verdict.value)
    return f'<div class="badge {verdict.level}">{label}<b>{value}</b></div>'


def _status(passed: bool) -> _Html:
    return _Html('<span class="good">pass</span>' if passed else '<span class="bad">FAIL</span>')


# ---- figure helpers --------------------------------------------------------------------------


def _panels(n: int, columns: int = 4) -> tuple[Figure, list[Axes]]:
    ncols = min(n, columns)
    nrows = math.ceil(n / ncols)
    figure = Figure(
        figsize=(PANEL_INCHES[0] * ncols, PANEL_INCHES[1] * nrows), layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(nrows, ncols, squeeze=False).ravel())
    for unused in axes[n:]:
        unused.set_visible(False)
    return figure, axes[:n]


def _embed(figure: Figure, caption: str) -> _Html:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return _Html(
        f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _literal(text: str) -> str:
    # Matplotlib reads text between dollar signs as mathtext and fails on names like "Cu$2".
    return text.replace("$", r"\$")


def _head_colour(head: str, index: int) -> str:
    return HEAD_COLOURS.get(head, f"C{index + 2}")


# ---- header and verdicts ---------------------------------------------------------------------


def _header(report: JobReport) -> _Html:
    title = _esc(report.title or "Fine-tuning report")
    generated = report.generated_at
    stamp = f'<div class="muted">generated {_esc(_when(generated))}</div>' if generated else ""
    job = report.job
    facts = _job_facts(job) + _hyperparameters(job) if job and is_measured(job) else ""
    return _Html(f"<header><h1>{title}</h1>{stamp}{facts}{_verdicts(report)}</header>")


def _job_facts(job: JobFacts) -> str:
    facts = [
        ("Job", job.id),
        ("State", job.state),
        ("Strategy", job.strategy),
        ("Foundation", job.foundation_model),
        ("Train data", job.train_dataset),
        ("Test data", job.test_dataset),
        ("Created", job.created_at and _when(job.created_at)),
        ("Started", job.started_at and _when(job.started_at)),
        ("Finished", job.finished_at and _when(job.finished_at)),
        ("Queued", _duration(job.created_at, job.started_at)),
        ("Duration", _duration(job.started_at, job.finished_at)),
    ]
    items = "".join(
        f"<div><dt>{_esc(name)}</dt><dd>{_esc(value)}</dd></div>"
        for name, value in facts
        if value is not None
    )
    return f'<dl class="facts">{items}</dl>'


def _hyperparameters(job: JobFacts) -> str:
    settings = job.effective_hyperparameters
    if not settings:
        return ""
    rows = [(name, _plain(value)) for name, value in settings.items()]
    return (
        f"<details><summary>Effective hyperparameters ({len(rows)})</summary>"
        f"{_table(('Setting', 'Value'), rows)}</details>"
    )


def _verdicts(report: JobReport) -> str:
    badges = report_verdicts(report.to_json())
    if not badges:
        return ""
    return f'<div class="verdicts">{"".join(_badge(b) for b in badges)}</div>'


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
            f"<li><b>{_esc(name)}</b> {_esc(_plain(checks[name]))}</li>" for name in failed
        )
        boxes.append(f'<div class="alert bad"><b>Failed checks</b><ul>{items}</ul></div>')
    if warnings:
        items = "".join(f"<li>{_esc(text)}</li>" for text in warnings)
        boxes.append(f'<div class="alert warn"><b>Warnings</b><ul>{items}</ul></div>')
    return _section("Needs attention", *boxes) if boxes else ""


def _checks_section(report: JobReport) -> str:
    checks = _checks(report)
    if not checks:
        return ""
    rows = []
    for name, value in checks.items():
        passed = _check_passed(value)
        shown = _num(value) if isinstance(value, float) else _plain(value)
        rows.append((name, "—" if passed is None else _status(passed), shown))
    return _section("Checks", _table(("Check", "Result", "Details"), rows, numeric_from=3))


# ---- E0s -------------------------------------------------------------------------------------


def _e0s_section(report: JobReport) -> str:
    e0s = report.e0s
    if e0s is None or not is_measured(e0s):
        return ""
    summary = (
        f"<p>Method <b>{_esc(e0s.method or '—')}</b> · fitted on "
        f"{_esc(_count(e0s.n_configs))} configurations"
        + (f" · rank {_esc(_count(e0s.rank))}" if e0s.rank is not None else "")
        + "</p>"
    )
    rmse = _table(
        ("", "Foundation E0s", "Chosen E0s"),
        [
            (
                "Energy RMSE on training data (meV/atom)",
                _num(e0s.energy_rmse_before),
                _num(e0s.energy_rmse_after),
            )
        ],
    )
    return _section("Reference energies (E0s)", summary, rmse, _e0s_table(e0s))


def _e0s_table(e0s: E0sReport) -> str:
    rows = e0_rows(e0s)
    columns = [
        (title, key)
        for title, key in E0_COLUMNS
        if key in ("element", "e0", "method") or any(row[key] is not None for row in rows)
    ]
    return _table(
        [title for title, _ in columns],
        [[_ev(row[key]) if key not in ("element", "method") else row[key] for _, key in columns]
         for row in rows],
    )  # fmt: skip


def _not_measured_section(report: JobReport) -> str:
    if not report.not_measured:
        return ""
    return _section(
        "Not measured",
        "<p>These sections could not run; the model was delivered and the job succeeded with "
        "the others.</p>",
        _table(("Section", "Reason"), list(report.not_measured.items()), numeric_from=2),
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
    return _section("Learning curves", figure) if figure else ""


def _learning_figure(curve: list[EpochReport]) -> str:
    figure = learning_curve_figure(curve)
    if figure is None:
        return ""
    return _embed(figure, "Validation errors per epoch, one row of panels per head (log scale)")


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
    figure, axes = _panels(len(panels), columns=columns)
    for ax, (head, key, title) in zip(axes, panels, strict=True):
        x, y = zip(*_head_series(epochs, head, key), strict=True)
        ax.plot(x, y, marker="o", ms=3, color=_head_colour(head, heads.index(head)))
        name = f"{title} · {head}" if len(heads) > 1 else title
        ax.set(yscale="log", title=_literal(name), xlabel="epoch (−1: before training)")
        _readable_log_ticks(ax, y)
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


def _readable_log_ticks(ax: Axes, values: Sequence[float]) -> None:
    """Log axis ticks that read as distinct plain numbers ("0.28", "0.3", "0.32"): within a
    decade matplotlib's defaults label every minor tick alike ("3e-01")."""
    low, high = min(values), max(values)
    if high / low >= 10:
        ax.yaxis.set_major_locator(LogLocator(base=10))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        return
    margin = (high / low) ** 0.1 if high > low else 1.1
    ax.set_ylim(low / margin, high * margin)
    ticks = MaxNLocator(nbins=4).tick_values(low / margin, high * margin)
    ticks = [tick for tick in ticks if low / margin <= tick <= high * margin and tick > 0]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FixedFormatter(_distinct_labels(ticks)))
    ax.yaxis.set_minor_locator(NullLocator())


def _distinct_labels(ticks: Sequence[float]) -> list[str]:
    """The fewest significant digits that tell every tick apart."""
    for digits in range(1, 8):
        labels = [f"{tick:.{digits}g}" for tick in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{tick:g}" for tick in ticks]


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
        parts.append(f"<h3>{_esc(label)} · {_esc(_count(metrics.n_configs))} configurations</h3>")
        parts.append(_metrics_table(metrics))
        if metrics.worse_than_zero:
            worse = ", ".join(metrics.worse_than_zero)
            parts.append(
                f'<p class="bad"><b>Worse than predicting zero:</b> {_esc(worse)} (RMSE above '
                "the labels' own RMS)</p>"
            )
        parts.append(_accuracy_figure(label, metrics))
    return _section("Accuracy", *parts)


def _metrics_table(metrics: AccuracyReport) -> str:
    subsets: dict[str, ErrorMetricsReport] = {"all": metrics} | metrics.per_config_type
    columns = [
        (key, name, unit)
        for key, name, unit in METRICS
        if any(getattr(row, key) is not None for row in subsets.values())
    ]
    headers = ["Config type", "Configs"] + [f"{name} ({unit})" for _, name, unit in columns]
    rows = [
        [name, _count(row.n_configs)] + [_num(getattr(row, key)) for key, _, _ in columns]
        for name, row in subsets.items()
    ]
    return _table(headers, rows)


def _accuracy_figure(label: str, metrics: AccuracyReport) -> str:
    parity = metrics.parity or ParityReport()
    plotted = [
        (quantity, values)
        for quantity in PARITY_QUANTITIES
        if (values := getattr(parity, quantity.key)) is not None and values.reference
    ]
    if not plotted:
        return ""
    figure, axes = _panels(2 * len(plotted))
    for (quantity, values), parity_ax, error_ax in zip(plotted, axes[::2], axes[1::2], strict=True):
        reference = np.asarray(values.reference, dtype=float)
        predicted = np.asarray(values.predicted, dtype=float)
        rmse = _num(getattr(metrics, quantity.rmse_key), quantity.error_unit)
        _parity_panel(parity_ax, reference, predicted, quantity, rmse)
        _error_histogram(error_ax, (predicted - reference) * 1e3, quantity)
    return _embed(figure, f"{label}: predicted vs reference, and the distribution of errors")


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
            _num(getattr(foundation, key)),
            _num(getattr(finetuned, key)),
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
                _num(offset_free.foundation_mev_per_atom),
                _num(offset_free.fine_tuned_mev_per_atom),
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
        f"<p>Errors on <b>{_esc(dataset)}</b> before and "
        "after fine-tuning; a ratio above 1 means the model got worse there.</p>"
    )
    return _section(
        "Forgetting",
        intro,
        _table(("Metric", "Foundation", "Fine-tuned", "Fine-tuned / foundation"), rows),
        note,
    )


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "—"
    return f"{_num(numerator / denominator)}×"


# ---- molecular dynamics ----------------------------------------------------------------------


ENERGY_TRACE = field_name(MDRunReport, "energy_ev")
MD_TRACES = (
    (field_name(MDRunReport, "temperature_K"), "temperature (K)"),
    (ENERGY_TRACE, "E − E(t=0) (eV)"),
)


def _md_section(report: JobReport) -> str:
    md = report.md
    if not md:
        return ""
    rows = [
        (
            run.structure,
            _md_system(run),
            run.run or "",
            _num(run.survived_ps),
            _num(run.total_ps),
            _num(run.study_ps),
            "not applicable" if run.stable is None else _status(run.stable),
            run.not_applicable or run.failure or "",
        )
        for run in md
    ]
    table = _table(
        (
            "Structure",
            "Simulated as",
            "Run",
            "Survived (ps)",
            "Length (ps)",
            "Study (ps)",
            "Stable",
            "Why",
        ),
        rows,
        numeric_from=3,
    )
    bases = sorted({run.length_basis for run in md if run.length_basis})
    note = "".join(f'<p class="muted">Lengths: {_esc(basis)}.</p>' for basis in bases)
    return _section("Molecular dynamics", table + note, _md_figure(md))


def _md_system(run: MDRunReport) -> str:
    if run.n_atoms is None:
        return ""
    return f"{run.n_atoms} atoms" + (f" ({run.replication})" if run.replication else "")


def _md_figure(md: list[MDRunReport]) -> str:
    traces = [
        (key, label)
        for key, label in MD_TRACES
        if any(run.time_ps and getattr(run, key) for run in md)
    ]
    if not traces:
        return ""
    figure, axes = _panels(len(traces), columns=2)
    for ax, (key, label) in zip(axes, traces, strict=True):
        for index, run in enumerate(md):
            if run.time_ps and getattr(run, key):
                _md_trace(ax, run, key, f"C{index}")
        ax.set(xlabel="time (ps)", ylabel=label)
    # One legend below both panels: inside, it would cover the end of the traces that matter.
    entries = {
        label: handle
        for ax in axes
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)
    }
    figure.legend(
        entries.values(), entries.keys(), loc="outside lower center", ncols=min(len(entries), 3)
    )
    return _embed(figure, "MD traces; a red × marks where an unstable run stopped")


def _md_trace(ax: Axes, run: MDRunReport, key: str, colour: str) -> None:
    time = np.asarray(run.time_ps, dtype=float)
    values = np.asarray(getattr(run, key), dtype=float)
    # Total energies of different structures differ by far more than their drift; the change
    # from the start is what shows whether the run conserves energy.
    if key == ENERGY_TRACE:
        values = values - values[0]
    n = min(len(time), len(values))
    ax.plot(
        time[:n],
        values[:n],
        lw=1,
        color=colour,
        label=_literal(f"{run.structure} · {run.run}"),
    )
    if not run.stable:
        ax.plot(time[n - 1], values[n - 1], "x", color=HOLE_COLOUR, ms=9, mew=2, clip_on=False)


# ---- radial distribution functions -----------------------------------------------------------


def _rdf_section(report: JobReport) -> str:
    pairs = report.rdf.pairs if report.rdf else None
    if not pairs:
        return ""
    return _section("Radial distribution functions", _rdf_figure(pairs))


def _rdf_figure(pairs: dict[str, RdfPairReport]) -> str:
    figure, axes = _panels(len(pairs))
    for ax, (pair, rdf) in zip(axes, pairs.items(), strict=True):
        emd = rdf.emd
        model_label = "model" + (f" (EMD {_num(emd)})" if emd is not None else "")
        ax.plot(rdf.r, rdf.model, color=HEAD_COLOURS["target"], label=model_label)
        if rdf.reference:
            ax.plot(rdf.r, rdf.reference, color=REFERENCE_COLOUR, ls="--", label="reference")
        ax.set(title=_literal(pair), xlabel="r (Å)", ylabel="g(r)")
        ax.legend()
    return _embed(
        figure, "Radial distribution functions, model vs reference (EMD: earth mover's distance)"
    )


# ---- dimers and compression ------------------------------------------------------------------


def _dimers_section(report: JobReport) -> str:
    dimers = report.dimers
    if dimers is None or not is_measured(dimers):
        return ""
    parts = [
        _dimer_figure(dimers.pairs),
        _compression_figure(dimers.compression),
    ]
    return _section("Dimers and compression", *parts) if any(parts) else ""


# The four criteria of core.evaluation.rss, as column headers.
RSS_CRITERIA = {
    "min_distance": "too close",
    "collapsed_volume": "collapsed volume",
    "low_energy": "energy outlier",
    "compressed_low_energy": "compressed, low energy",
}


def _rss_section(report: JobReport) -> str:
    rss = report.rss_holes
    if rss is None or not is_measured(rss):
        return ""
    own = rss.models["model"].rates if "model" in rss.models else {}
    base = rss.models["foundation"].rates if "foundation" in rss.models else {}
    foundation = rss.models["foundation"].name if "foundation" in rss.models else None
    headers = ["pressure", "hole rate", f"foundation {foundation or ''}".strip()]
    headers += [*RSS_CRITERIA.values(), "failed"]
    rows = [
        [f"{pressure} GPa", _rss_rate(rates), _rss_rate(base.get(pressure))]
        + [rates.criteria.get(name) for name in RSS_CRITERIA]
        + [rates.failed]
        for pressure, rates in own.items()
    ]
    per_composition = [
        [
            composition,
            f"{pressure} GPa",
            _rss_rate(group),
            _rss_rate(_composition_rates(base.get(pressure), composition)),
            group.failed,
        ]
        for pressure, rates in own.items()
        for composition, group in rates.compositions.items()
    ]
    failures = rss.failures
    notes = [
        f"{len(rss.compositions)} compositions × "
        f"{(rss.settings or {}).get('structures_per_composition')} random crystals "
        f"(structure set {str(rss.structure_set)[:12]}); {rss.flagged or 0} flagged "
        "structures in rss-holes.extxyz."
    ]
    if failures:
        notes.append(
            f"{len(failures)} relaxations failed, e.g. {failures[0].composition} "
            f"#{failures[0].index}: {failures[0].reason}"
        )
    return _section(
        "Random structure search: holes",
        f'<p class="muted">{_esc(" ".join(notes))}</p>',
        _table(headers, rows),
        _rss_figure(own, base),
        "<h3>Per composition</h3>",
        _table(
            ["composition", "pressure", "hole rate", "foundation", "failed"], per_composition, 2
        ),
    )


def _composition_rates(rates: RssRates | None, composition: str) -> RssRates | None:
    return rates.compositions.get(composition) if rates else None


def _rss_rate(rates: RssRates | None) -> str:
    if rates is None or rates.rate is None:
        return "–"
    return f"{rates.rate:.0%} ({rates.holes}/{rates.relaxed})"


def _rss_figure(own: dict[str, RssRates], base: dict[str, RssRates]) -> str:
    if not own:
        return ""
    figure, (ax,) = _panels(1)
    pressures = list(own)
    x = np.arange(len(pressures))
    series = [("model", own, HEAD_COLOURS["target"])]
    if base:
        series.append(("foundation", base, REFERENCE_COLOUR))
    width = 0.8 / len(series)
    for offset, (label, rates, colour) in enumerate(series):
        values = [100 * (_rate_at(rates, p) or 0.0) for p in pressures]
        bars = ax.bar(
            x + (offset - (len(series) - 1) / 2) * width, values, width, label=label, color=colour
        )
        ax.bar_label(bars, fmt="%.0f%%", fontsize=7)
    ax.set_xticks(x, [f"{p} GPa" for p in pressures])
    ax.set_ylabel("hole rate (%)")
    ax.legend()
    return _embed(figure, "Hole rate per pressure, beside the foundation's on the same structures")


def _rate_at(rates: dict[str, RssRates], pressure: str) -> float | None:
    return rates[pressure].rate if pressure in rates else None


def _dimer_figure(pairs: dict[str, DimerCurveReport]) -> str:
    if not pairs:
        return ""
    figure, axes = _panels(len(pairs))
    for ax, (pair, curve) in zip(axes, pairs.items(), strict=True):
        _curve_panel(ax, pair, curve.r, curve.energy, bool(curve.hole), "r (Å)")
        _clip_repulsive_wall(ax, curve.r, curve.energy)
    return _embed(
        figure, "Dimer energy curves; red curves have a hole (energy falls at short range)"
    )


def _clip_repulsive_wall(ax: Axes, r: Sequence[float], energy: Sequence[float]) -> None:
    ceiling = energy[int(np.argmax(r))] + DIMER_VIEW_ABOVE_TAIL_EV
    if max(energy) > ceiling:
        floor = min(energy)
        ax.set_ylim(floor - 0.05 * (ceiling - floor), ceiling)


def _compression_figure(curves: list[CompressionCurveReport]) -> str:
    if not curves:
        return ""
    figure, axes = _panels(len(curves))
    for ax, curve in zip(axes, curves, strict=True):
        _curve_panel(
            ax,
            curve.structure or "",
            curve.scale,
            curve.energy,
            bool(curve.hole),
            "lattice scale",
        )
    return _embed(figure, "Energy under uniform compression and expansion; red curves have a hole")


def _curve_panel(
    ax: Axes, title: str, x: Sequence[float], energy: Sequence[float], hole: bool, xlabel: str
) -> None:
    colour = HOLE_COLOUR if hole else HEAD_COLOURS["target"]
    ax.plot(x, energy, color=colour, marker="o", ms=2.5)
    ax.set_title(_literal(f"{title} — hole" if hole else title), color=colour if hole else "black")
    ax.set(xlabel=xlabel, ylabel="energy (eV)")


# ---- sweeps ----------------------------------------------------------------------------------

SWEEP_COLUMNS = tuple(
    (field_name(SweepRow, key), title, unit)
    for key, title, unit in (
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
    )
)


def render_sweep_html(summary: dict[str, Any] | SweepSummary) -> str:
    """A sweep's comparison table, its recommendation and accuracy-versus-forgetting plot."""
    sweep = SweepSummary.from_json(summary if isinstance(summary, dict) else summary.to_json())
    rows = sweep.table
    with matplotlib.rc_context(FIGURE_STYLE):
        body = "".join(
            [
                _Html(f"<h1>Sweep {_esc(sweep.id)}</h1>"),
                _recommendation(sweep.recommendation or SweepRecommendation()),
                _early_stopping(sweep.early_stopping),
                _section(
                    "Comparison",
                    _table(
                        [name + (f" ({unit})" if unit else "") for _, name, unit in SWEEP_COLUMNS],
                        [_sweep_cells(row) for row in rows],
                    ),
                    _sweep_gaps(rows),
                ),
                _sweep_figure(rows),
            ]
        )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Sweep {_esc(sweep.id)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


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
        f"<li>{_esc(row.strategy)} ({_esc((row.job_id or '')[:8])}): {_esc(text)}</li>"
        for row in rows
        for text in [f"{k} not measured: {v}" for k, v in (row.not_measured or {}).items()]
        + ([f"{row.state}: {row.error}"] if row.error else [])
    ]
    return f"<p>Missing numbers:</p><ul>{''.join(items)}</ul>" if items else ""


def _sweep_cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    return _num(value) if isinstance(value, float) else str(value)


def _recommendation(recommendation: SweepRecommendation) -> str:
    items = [
        f"<li><b>{_esc(use)}</b>: {_esc(choice.strategy or 'undecided')} — "
        f"{_esc(choice.reason or '')}</li>"
        for use, choice in (
            ("One target system", recommendation.single_system),
            ("Broad use", recommendation.broad_use),
        )
        if choice
    ]
    return _section("Recommendation", f"<ul>{''.join(items)}</ul>") if items else ""


def _early_stopping(halving: SweepEarlyStopping | None) -> str:
    if halving is None or halving.rule is None:
        return ""
    stopped = "".join(
        f"<li>{_esc(job.strategy or '')} ({_esc(job.job_id)}): {_esc(job.reason or '')}</li>"
        for job in halving.stopped
    )
    listed = f"<ul>{stopped}</ul>" if stopped else "<p>No job was stopped.</p>"
    return _section("Stopped early", f"<p>{_esc(halving.rule)}</p>{listed}")


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
    figure, (axes,) = _panels(1)
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
            _literal(_point_label(row, varying)),
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
    return _section(
        "Accuracy versus forgetting",
        _embed(figure, "Each job: target accuracy (x) against retained foundation accuracy (y)"),
    )
