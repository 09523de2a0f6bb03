"""The HTML the report pages are built of: one stylesheet, escaping, tables, sections, badges
and the few ways numbers and times are written on a page."""

import html
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from core.reporting.report_models import ReportModel, field_name
from core.reporting.verdicts import Verdict

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


class Html(str):
    """Markup built here, safe to insert as is; any other string is escaped."""


def esc(text: Any) -> Html:
    return text if isinstance(text, Html) else Html(html.escape(str(text)))


def count_text(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def when_text(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M") + (f" {moment.tzname()}" if moment.tzinfo else "")


def duration_text(start: str | None, end: str | None) -> str | None:
    if start is None or end is None:
        return None
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def plain_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


# ---- HTML building blocks --------------------------------------------------------------------


def html_section(title: str, *parts: str) -> Html:
    return Html(f"<section><h2>{esc(title)}</h2>{''.join(parts)}</section>")


def html_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1
) -> Html:
    """Columns from `numeric_from` on are right-aligned, so digits line up."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=n' if i >= numeric_from else ''}>{esc(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def badge(verdict: Verdict) -> str:
    label, value = esc(verdict.label), esc(verdict.value)
    return f'<div class="badge {verdict.level}">{label}<b>{value}</b></div>'


def pass_fail(passed: bool) -> Html:
    return Html('<span class="good">pass</span>' if passed else '<span class="bad">FAIL</span>')


def html_page(title: str, body: str) -> str:
    """A self-contained page: the stylesheet is inline, so the file opens offline."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def table_columns(
    model: type[ReportModel], columns: Iterable[tuple[str, str, str]]
) -> tuple[tuple[str, str, str], ...]:
    """(field, title, unit) of a table's columns, each field checked by field_name."""
    return tuple((field_name(model, key), title, unit) for key, title, unit in columns)
