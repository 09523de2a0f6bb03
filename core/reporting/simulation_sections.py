"""The report's sections on how the model behaves beyond its data: molecular dynamics, radial
distribution functions, dimers and compression, and the holes a random structure search finds."""

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

from core.reporting.figures import (
    HEAD_COLOURS,
    HOLE_COLOUR,
    REFERENCE_COLOUR,
    curve_panel,
    embed_figure,
    mathtext_literal,
    panel_grid,
)
from core.reporting.markup import (
    esc,
    html_section,
    html_table,
    pass_fail,
)
from core.reporting.report_models import (
    CompressionCurveReport,
    DimerCurveReport,
    JobReport,
    MDRunReport,
    RdfPairReport,
    RssRates,
    field_name,
    is_measured,
)
from core.reporting.verdicts import number_text

# A dimer's repulsive wall spans orders of magnitude; cutting the view this far above the
# dissociation limit keeps the well, and any hole below it, readable.
DIMER_VIEW_ABOVE_TAIL_EV = 10.0


# ---- molecular dynamics ----------------------------------------------------------------------


ENERGY_TRACE = field_name(MDRunReport, "energy_ev")
MD_TRACES = (
    (field_name(MDRunReport, "temperature_K"), "temperature (K)"),
    (ENERGY_TRACE, "E − E(t=0) (eV)"),
)


def md_section(report: JobReport) -> str:
    md = report.md
    if not md:
        return ""
    rows = [
        (
            run.structure,
            _md_system(run),
            run.run or "",
            number_text(run.survived_ps),
            number_text(run.total_ps),
            number_text(run.study_ps),
            "not applicable" if run.stable is None else pass_fail(run.stable),
            run.not_applicable or run.failure or "",
        )
        for run in md
    ]
    table = html_table(
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
    note = "".join(f'<p class="muted">Lengths: {esc(basis)}.</p>' for basis in bases)
    return html_section("Molecular dynamics", table + note, _md_figure(md))


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
    figure, axes = panel_grid(len(traces), columns=2)
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
    return embed_figure(figure, "MD traces; a red × marks where an unstable run stopped")


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
        label=mathtext_literal(f"{run.structure} · {run.run}"),
    )
    if not run.stable:
        ax.plot(time[n - 1], values[n - 1], "x", color=HOLE_COLOUR, ms=9, mew=2, clip_on=False)


# ---- radial distribution functions -----------------------------------------------------------


def rdf_section(report: JobReport) -> str:
    pairs = report.rdf.pairs if report.rdf else None
    if not pairs:
        return ""
    return html_section("Radial distribution functions", _rdf_figure(pairs))


def _rdf_figure(pairs: dict[str, RdfPairReport]) -> str:
    figure, axes = panel_grid(len(pairs))
    for ax, (pair, rdf) in zip(axes, pairs.items(), strict=True):
        emd = rdf.emd
        model_label = "model" + (f" (EMD {number_text(emd)})" if emd is not None else "")
        ax.plot(rdf.r, rdf.model, color=HEAD_COLOURS["target"], label=model_label)
        if rdf.reference:
            ax.plot(rdf.r, rdf.reference, color=REFERENCE_COLOUR, ls="--", label="reference")
        ax.set(title=mathtext_literal(pair), xlabel="r (Å)", ylabel="g(r)")
        ax.legend()
    return embed_figure(
        figure, "Radial distribution functions, model vs reference (EMD: earth mover's distance)"
    )


# ---- dimers and compression ------------------------------------------------------------------


def dimers_section(report: JobReport) -> str:
    dimers = report.dimers
    if dimers is None or not is_measured(dimers):
        return ""
    parts = [
        _dimer_figure(dimers.pairs),
        _compression_figure(dimers.compression),
    ]
    return html_section("Dimers and compression", *parts) if any(parts) else ""


# The four criteria of core.evaluation.rss, as column headers.
RSS_CRITERIA = {
    "min_distance": "too close",
    "collapsed_volume": "collapsed volume",
    "low_energy": "energy outlier",
    "compressed_low_energy": "compressed, low energy",
}


def rss_section(report: JobReport) -> str:
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
    return html_section(
        "Random structure search: holes",
        f'<p class="muted">{esc(" ".join(notes))}</p>',
        html_table(headers, rows),
        _rss_figure(own, base),
        "<h3>Per composition</h3>",
        html_table(
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
    figure, (ax,) = panel_grid(1)
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
    return embed_figure(
        figure, "Hole rate per pressure, beside the foundation's on the same structures"
    )


def _rate_at(rates: dict[str, RssRates], pressure: str) -> float | None:
    return rates[pressure].rate if pressure in rates else None


def _dimer_figure(pairs: dict[str, DimerCurveReport]) -> str:
    if not pairs:
        return ""
    figure, axes = panel_grid(len(pairs))
    for ax, (pair, curve) in zip(axes, pairs.items(), strict=True):
        curve_panel(ax, pair, curve.r, curve.energy, bool(curve.hole), "r (Å)")
        _clip_repulsive_wall(ax, curve.r, curve.energy)
    return embed_figure(
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
    figure, axes = panel_grid(len(curves))
    for ax, curve in zip(axes, curves, strict=True):
        curve_panel(
            ax,
            curve.structure or "",
            curve.scale,
            curve.energy,
            bool(curve.hole),
            "lattice scale",
        )
    return embed_figure(
        figure, "Energy under uniform compression and expansion; red curves have a hole"
    )
