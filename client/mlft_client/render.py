"""How `mlft` shows what the server answers: `--json` as the server's JSON, otherwise rich
tables that fit the terminal's width (80 columns away from a terminal, or $COLUMNS)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

# (heading, how to read it from an item); columns after the first may be squeezed or cut.
Column = tuple[str, Callable[[dict[str, Any]], Any]]
# Between two columns of a table: the padding on either side and the separator.
COLUMN_GAP = 3


def stdout() -> Console:
    # Resolved per call, so tests that capture sys.stdout see the output.
    return Console(highlight=False, soft_wrap=False)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def print_table(items: Sequence[dict[str, Any]], columns: Sequence[Column], title: str) -> None:
    """Columns in order of importance: those that do not fit the terminal's width are left out
    whole (`--json` has everything), so no cell is cut into an unreadable stub."""
    console = stdout()
    rows = [[cell(read(item)) for _, read in columns] for item in items]
    kept: list[int] = []
    used = 0
    for index, (heading, _) in enumerate(columns):
        width = max([len(heading), *(len(row[index]) for row in rows)])
        if index == 0 or used + COLUMN_GAP + width <= console.width:
            kept.append(index)
            used += width + (COLUMN_GAP if kept[1:] else 0)
    table = Table(
        box=box.SIMPLE_HEAD,
        title=title,
        title_justify="left",
        pad_edge=False,
        show_edge=False,
        padding=(0, 1),
    )
    for index in kept:
        table.add_column(columns[index][0], no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(row[index] for index in kept))
    console.print(table)


def print_details(item: dict[str, Any], fields: Sequence[str] | None = None) -> None:
    """One resource as `key  value` lines; nested values as compact JSON, cut at the width."""
    keys = [key for key in fields or list(item) if key in item]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, min_width=max(map(len, keys), default=0))
    table.add_column(no_wrap=True, overflow="ellipsis")
    for key in keys:
        if item.get(key) not in (None, [], {}):
            table.add_row(key, cell(item[key]))
    stdout().print(table)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items())
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return " ".join(cell(item) for item in value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def short_time(value: str | None) -> str:
    """`2026-12-07T13:04:55.123+00:00` as `2026-12-07 13:04`."""
    return value[:16].replace("T", " ") if value else "-"


def spec_of(item: dict[str, Any]) -> dict[str, Any]:
    return item.get("spec") or {}


def strategy_of(item: dict[str, Any]) -> str:
    # A row stored before a spec rule existed may lack parts of today's spec.
    return str(spec_of(item).get("strategy", {}).get("name", "?"))


def epochs_of(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    return f"{progress.get('epochs_done', '?')}/{progress.get('max_epochs', '?')}"


def tags_of(item: dict[str, Any]) -> str:
    tags = item.get("tags") or spec_of(item).get("tags") or {}
    return ",".join(f"{key}={value}" for key, value in tags.items()) or "-"


def name_of(item: dict[str, Any]) -> str:
    return str(item.get("name") or spec_of(item).get("name") or "-")


def summary_of(dataset: dict[str, Any]) -> dict[str, Any]:
    return dataset.get("summary") or {}


def describe_labels(summary: dict[str, Any]) -> str:
    """`energy 120/120, forces 120/120, stress 100/120 (dft_stress)`: counts and keys."""
    counts = summary.get("label_counts", {})
    parts = []
    for label in summary.get("labels", []):
        count = counts.get(label)
        key = summary.get(f"{label}_key")
        text = f"{label} {count['configs']}/{count['of']}" if count else label
        parts.append(f"{text} ({key})" if key and key != label else text)
    return ", ".join(parts) or "none"


JOB_COLUMNS: list[Column] = [
    ("id", lambda job: job["id"]),
    ("state", lambda job: job["state"]),
    ("strategy", strategy_of),
    ("epochs", epochs_of),
    ("name", name_of),
    ("created", lambda job: short_time(job.get("created_at"))),
    ("foundation", lambda job: spec_of(job).get("foundation_model")),
    ("tags", tags_of),
]
DATASET_COLUMNS: list[Column] = [
    ("id", lambda item: item["id"]),
    ("name", lambda item: item["name"]),
    ("configs", lambda item: summary_of(item).get("n_configs")),
    ("elements", lambda item: summary_of(item).get("elements")),
    ("labels", lambda item: describe_labels(summary_of(item))),
    ("warnings", lambda item: len(summary_of(item).get("warnings", []))),
    ("created", lambda item: short_time(item.get("created_at"))),
]
FOUNDATION_COLUMNS: list[Column] = [
    ("name", lambda item: item["name"]),
    ("status", lambda item: item.get("status") if item.get("available") else "unavailable"),
    ("source", lambda item: item.get("source")),
    ("elements", lambda item: len(item.get("elements") or []) or None),
    ("heads", lambda item: item.get("heads")),
    ("parameters", lambda item: item.get("parameters")),
    ("sha256", lambda item: (item.get("sha256") or "")[:12] or None),
]
STRATEGY_COLUMNS: list[Column] = [
    ("name", lambda item: item["name"]),
    ("trains", lambda item: item.get("trainable")),
    ("lr", lambda item: item.get("lr")),
    ("replay", lambda item: item.get("replay")),
    ("summary", lambda item: item.get("summary")),
]
EVALUATION_COLUMNS: list[Column] = [
    ("id", lambda item: item["id"]),
    ("state", lambda item: item["state"]),
    ("model", lambda item: spec_of(item).get("model")),
    ("dataset", lambda item: spec_of(item).get("dataset")),
    ("created", lambda item: short_time(item.get("created_at"))),
]
SWEEP_COLUMNS: list[Column] = [
    ("id", lambda item: item["id"]),
    ("name", name_of),
    ("strategies", lambda item: item.get("strategies")),
    ("jobs", lambda item: item.get("jobs")),
    ("finished", lambda item: item.get("finished")),
    ("tags", tags_of),
    ("created", lambda item: short_time(item.get("created_at"))),
]
SWEEP_ROW_COLUMNS: list[Column] = [
    ("job", lambda row: row.get("job_id")),
    ("strategy", lambda row: row.get("strategy")),
    ("state", lambda row: row.get("state")),
    ("E rmse meV/at", lambda row: row.get("test_energy_rmse_mev_per_atom")),
    ("F rmse meV/Å", lambda row: row.get("test_forces_rmse_mev_per_a")),
    ("forgetting", lambda row: row.get("forgetting_ratio")),
    ("MD stable", lambda row: row.get("md_stable")),
    ("new holes", lambda row: row.get("new_dimer_holes")),
    ("wall s", lambda row: row.get("wall_time_s")),
]
REPLAY_SET_COLUMNS: list[Column] = [
    ("id", lambda item: item["id"]),
    ("state", lambda item: item["state"]),
    ("stage", lambda item: item.get("stage")),
    ("size", lambda item: item.get("size")),
    ("dataset", lambda item: item.get("dataset_id")),
    ("created", lambda item: short_time(item.get("created_at"))),
]
PROJECT_COLUMNS: list[Column] = [
    ("id", lambda item: item["id"]),
    ("name", lambda item: item["name"]),
    ("created", lambda item: short_time(item.get("created_at"))),
]
JOB_FIELDS = [
    "id", "name", "state", "tags", "progress", "error", "warnings", "spec", "e0s", "cost",
    "created_at", "started_at", "finished_at", "model_url", "model_card_url", "metrics_url",
]  # fmt: skip
