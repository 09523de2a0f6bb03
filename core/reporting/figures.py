"""Figures of the report pages: matplotlib `Figure` objects on the Agg canvas, never pyplot, whose
global figure registry is not safe in a worker that renders several reports; embedded as base64
PNGs so a page opens offline and can be mailed as it is."""

import base64
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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

from core.reporting.markup import (
    Html,
    esc,
)

if TYPE_CHECKING:  # for mypy only: older matplotlib releases (>=3.8 allowed) lack RcKeyType
    from matplotlib.typing import RcKeyType

HEAD_COLOURS = {"target": "#1f77b4", "replay": "#ff7f0e"}
REFERENCE_COLOUR = "#333333"
HOLE_COLOUR = "#d62728"

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


def panel_grid(n: int, columns: int = 4) -> tuple[Figure, list[Axes]]:
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


def embed_figure(figure: Figure, caption: str) -> Html:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Html(
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def mathtext_literal(text: str) -> str:
    # Matplotlib reads text between dollar signs as mathtext and fails on names like "Cu$2".
    return text.replace("$", r"\$")


def head_colour(head: str, index: int) -> str:
    return HEAD_COLOURS.get(head, f"C{index + 2}")


def readable_log_ticks(ax: Axes, values: Sequence[float]) -> None:
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


def curve_panel(
    ax: Axes, title: str, x: Sequence[float], energy: Sequence[float], hole: bool, xlabel: str
) -> None:
    colour = HOLE_COLOUR if hole else HEAD_COLOURS["target"]
    ax.plot(x, energy, color=colour, marker="o", ms=2.5)
    ax.set_title(
        mathtext_literal(f"{title} — hole" if hole else title), color=colour if hole else "black"
    )
    ax.set(xlabel=xlabel, ylabel="energy (eV)")
