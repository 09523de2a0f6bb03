"""The model card every delivered model carries: where it came from and what it was measured to do.

JSON for machines (the shape of core.reporting.report_models.ModelCard), Markdown for people; both
built
from one dict.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from core.reporting.report_models import (
    CardE0s,
    E0sReport,
    EvaluationSections,
    HeadlineMetrics,
    ModelCard,
)
from core.reporting.verdicts import md_length_text

SOFTWARE = ("mlft", "mace-torch", "torch", "e3nn", "ase", "numpy")


def software_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in SOFTWARE:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def build_model_card(
    *,
    job_id: str,
    spec: dict[str, Any],
    foundation: dict[str, Any] | None,
    datasets: dict[str, dict[str, Any]],
    effective_hyperparameters: dict[str, Any] | None,
    e0s: dict[str, Any],
    metrics: dict[str, Any],
    checks: dict[str, Any] | None,
    split: dict[str, Any] | None,
    preflight: dict[str, Any] | None,
    cost: dict[str, Any] | None,
    exports: dict[str, Any] | None,
    created_at: str,
) -> dict[str, Any]:
    """`datasets` maps a role (train, test, ...) to {id, name, sha256, n_configs, size_bytes}."""
    measured = EvaluationSections.from_json(metrics)
    card = {
        "job_id": job_id,
        "created_at": created_at,
        "foundation_model": foundation,
        "datasets": datasets,
        "level_of_theory": spec.get("level_of_theory"),
        "strategy": spec["strategy"],
        "effective_hyperparameters": effective_hyperparameters,
        "e0s": {"method": e0s.get("method"), "values_ev": e0s.get("e0s")},
        "elements": E0sReport.from_json(e0s).model_elements(),
        "metrics": headline_metrics(measured).to_json(),
        "checks": checks,
        "split": _split_summary(split),
        "preflight": _preflight_summary(preflight),
        "cost": cost,
        "exports": exports,
        "software": software_versions(),
    }
    # Issue 25: only where there is something to say, so older cards keep their shape.
    if e0s.get("kept_from_foundation"):
        card["e0s"]["kept_from_foundation_ev"] = e0s["kept_from_foundation"]
    if measured.not_measured:
        card["not_measured"] = measured.not_measured
    return ModelCard.model_validate(card).to_json()


def _lineage_text(lineage: dict[str, Any] | None) -> str:
    """A promoted foundation's origin (issue 28): the job it came from and that job's parent."""
    if not lineage:
        return ""
    parent = (lineage.get("parent_foundation") or {}).get("name", "none (scratch)")
    return f"; promoted from job {lineage.get('job_id')}, itself fine-tuned from {parent}"


def render_markdown(card: dict[str, Any] | ModelCard) -> str:
    card = ModelCard.from_json(card)
    foundation = card.foundation_model or {}
    lines = [
        f"# Model card: mlft job {card.job_id}",
        "",
        f"- Created: {card.created_at}",
        f"- Foundation model: {foundation.get('name', 'none (trained from scratch)')}"
        + (f" (sha256 `{foundation['sha256']}`)" if foundation.get("sha256") else "")
        + (f", head `{foundation['head']}`" if foundation.get("head") else "")
        + _lineage_text(foundation.get("lineage")),
        f"- Strategy: `{card.strategy['name']}`",
        f"- Level of theory: {card.level_of_theory or 'not given'}",
        f"- Elements the model knows: {' '.join(card.elements or []) or 'not recorded'}",
        "",
        "## Data",
        "",
        "| role | name | configurations | bytes | sha256 |",
        "|---|---|---|---|---|",
    ]
    for role, data in card.datasets.items():
        lines.append(
            f"| {role} | {data.get('name')} | {data.get('n_configs')} | "
            f"{data.get('size_bytes')} | `{data.get('sha256')}` |"
        )
    if card.split:
        lines += ["", split_sentence(card.split)]
    lines += ["", "## Training", "", "| setting | value |", "|---|---|"]
    for key, value in (card.effective_hyperparameters or {}).items():
        lines.append(f"| {key} | {value} |")
    kernels = (card.cost or {}).get("kernels") or {}
    if kernels.get("training"):
        # Issue 27: cuEq kernels train on a GPU; the saved model is e3nn either way.
        lines += ["", f"Trained with {kernels['training']} kernels; the model file is e3nn MACE."]
    e0s = card.e0s or CardE0s()
    lines += ["", f"## E0s ({e0s.method}, eV)", "", "| element | E0 |", "|---|---|"]
    for symbol, value in (e0s.values_ev or {}).items():
        lines.append(f"| {symbol} | {value:.6f} |")
    for symbol, value in (e0s.kept_from_foundation_ev or {}).items():
        lines.append(f"| {symbol} | {value:.6f} (foundation's; not in the training data) |")
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    for key, value in (card.metrics.to_json() if card.metrics else {}).items():
        lines.append(f"| {key} | {_format(value)} |")
    for section, reason in (card.not_measured or {}).items():
        lines.append(f"| {section} | not measured: {reason} |")
    if card.exports:
        lines += ["", "## Exports", "", "| variant | tested | detail |", "|---|---|---|"]
        for variant, result in card.exports.items():
            detail = result.error or (
                f"max |ΔE| {_format(result.max_energy_difference_ev)} eV, "
                f"max |ΔF| {_format(result.max_forces_difference_ev_per_a)} eV/Å"
            )
            lines.append(f"| {variant} | {'yes' if result.ok else 'failed'} | {detail} |")
    lines += ["", "## Software", ""]
    lines += [f"- {name}: {version}" for name, version in card.software.items()]
    return "\n".join(lines) + "\n"


def split_sentence(split: dict[str, Any]) -> str:
    """ "Split: 30 train, 4 valid, 6 test configurations (2 duplicates removed), grouped by
    trajectory, seed 123." """
    counts = split.get("counts") or {}
    sides = ", ".join(f"{counts.get(side, 0)} {side}" for side in ("train", "valid", "test"))
    text = f"Split: {sides} configurations"
    if counts.get("duplicates_removed"):
        text += f" ({counts['duplicates_removed']} duplicates removed)"
    if split.get("group_by"):
        text += f", grouped by `{split['group_by']}`"
    if split.get("seed") is not None:
        text += f", seed {split['seed']}"
    return text + "."


def headline_metrics(measured: EvaluationSections) -> HeadlineMetrics:
    test = (measured.accuracy or {}).get("test")
    headline = HeadlineMetrics(
        test_n_configs=test.n_configs if test else None,
        test_energy_rmse_mev_per_atom=test.energy_rmse_mev_per_atom if test else None,
        test_forces_rmse_mev_per_a=test.forces_rmse_mev_per_a if test else None,
        forgetting_force_rmse_ratio=(
            measured.forgetting.force_rmse_ratio if measured.forgetting else None
        ),
    )
    if measured.md:
        headline.md_stable = measured.md_stable()
        headline.md_survived_ps = ", ".join(
            f"{run.structure} {run.run}: {md_length_text(run.model_dump())}"
            if run.stable is not None
            else f"{run.structure}: not applicable ({run.not_applicable})"
            for run in measured.md
        )
    if measured.dimers is not None and "holes" in measured.dimers.model_fields_set:
        headline.dimer_holes = measured.dimers.holes
    return headline


def _split_summary(split: dict[str, Any] | None) -> dict[str, Any] | None:
    if split is None:
        return None
    return {
        "counts": split.get("counts"),
        "group_by": split.get("group_by"),
        "seed": split.get("seed"),
    }


def _preflight_summary(preflight: dict[str, Any] | None) -> dict[str, Any] | None:
    if preflight is None:
        return None
    return {
        "foundation_errors": preflight.get("foundation_errors"),
        "findings": [
            {"code": f["code"], "severity": f["severity"]} for f in preflight.get("findings", [])
        ],
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)
