"""The verdicts a report opens with (accuracy, forgetting, MD, holes, warnings), graded once here:
the HTML report (core.reporting.reports) shows them, and the report JSON carries them for the
dashboard."""

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Level = Literal["good", "warn", "bad"]

# Rules of thumb, not laws: (green up to, amber up to); above is red. Fine-tuned MACE models on
# molecular DFT data usually reach 20-50 meV/Å; a replay-set force error more than 1.5x the
# foundation's is forgetting a user will notice in production.
FORCE_RMSE_LIMITS_MEV_PER_A = (50.0, 100.0)
FORGETTING_RATIO_LIMITS = (1.5, 3.0)


@dataclass(frozen=True)
class Verdict:
    label: str  # what is graded ("test force RMSE")
    value: str  # the measurement as shown, unit included ("23.5 meV/Å")
    level: Level


def report_verdicts(report: dict) -> list[Verdict]:
    """The verdicts the report's sections allow, in the order a reader looks for them."""
    found = (
        _force_verdict(report.get("accuracy")),
        _forgetting_verdict(report.get("forgetting")),
        _md_verdict(report.get("md")),
        _holes_verdict(report.get("dimers")),
        _not_measured_verdict(report.get("not_measured")),
        _warnings_verdict(report.get("warnings")),
    )
    return [verdict for verdict in found if verdict is not None]


def _not_measured_verdict(not_measured: dict | None) -> Verdict | None:
    # Issue 25: a section that could not run is said up front, not left to look measured.
    if not not_measured:
        return None
    return Verdict("Not measured", ", ".join(not_measured), "warn")


def verdicts_json(report: dict) -> list[dict[str, str]]:
    """`report_verdicts` as the report JSON carries them: [{label, value, level}]."""
    return [asdict(verdict) for verdict in report_verdicts(report)]


def number_text(value: Any, unit: str = "", digits: int = 3) -> str:
    """`digits` significant figures, without switching to exponents for ordinary magnitudes."""
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    magnitude = abs(value)
    if magnitude >= 10**digits:
        text = f"{value:,.0f}"
    elif magnitude == 0:
        text = "0"
    elif magnitude >= 1e-3:
        decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
        text = f"{value:.{decimals}f}"
    else:
        text = f"{value:.{digits - 1}e}"
    return f"{text} {unit}" if unit else text


def level_of(value: float, limits: tuple[float, float]) -> Level:
    good, warn = limits
    return "good" if value <= good else "warn" if value <= warn else "bad"


def headline_dataset(accuracy: dict) -> tuple[str, dict]:
    label = "test" if "test" in accuracy else next(iter(accuracy))
    return label, accuracy[label]


def _force_verdict(accuracy: dict | None) -> Verdict | None:
    if not accuracy:
        return None
    label, metrics = headline_dataset(accuracy)
    rmse = metrics.get("forces_rmse_mev_per_a")
    if rmse is None:
        return None
    level = level_of(rmse, FORCE_RMSE_LIMITS_MEV_PER_A)
    return Verdict(f"{label} force RMSE", number_text(rmse, "meV/Å"), level)


def _forgetting_verdict(forgetting: dict | None) -> Verdict | None:
    ratio = (forgetting or {}).get("force_rmse_ratio")
    if ratio is None:
        return None
    return Verdict(
        "Forgetting (force RMSE ratio)",
        f"{number_text(ratio)}×",
        level_of(ratio, FORGETTING_RATIO_LIMITS),
    )


def _md_verdict(md: list[dict] | None) -> Verdict | None:
    """Stable or not, with the length each kind of run lasted beside the study's, so that
    "yes" says what it covers ("yes, 100 K over 0.1 of 250 ps, ramp over 0.1 of 50 ps")."""
    if not md:
        return None
    judged = [run for run in md if run.get("stable") is not None]
    if not judged:
        reasons = sorted({run.get("not_applicable") or "no structure to run" for run in md})
        return Verdict("MD stable", f"not applicable: {'; '.join(reasons)}", "warn")
    failed = [run for run in judged if not run.get("stable")]
    if failed:
        first = failed[0]
        return Verdict(
            "MD stable",
            f"no ({len(failed)} of {len(judged)} runs failed; {md_failure_text(first)})",
            "bad",
        )
    return Verdict("MD stable", f"yes, {_lengths_by_kind(judged)}", "good")


def md_length_text(run: dict) -> str:
    """The length a run lasted of the length asked, and the study's: "0.02 of 0.1 ps (study:
    250 ps)", or "0.1 of 250 ps" for a run that lasted its whole length."""
    survived, total, study = run.get("survived_ps"), run.get("total_ps"), run.get("study_ps")
    if survived is not None and total is not None and survived < total:
        text = f"{_ps(survived)} of {_ps(total)} ps"
        return text + (f" (study: {_ps(study)} ps)" if study else "")
    if study:
        return f"{_ps(total)} of {_ps(study)} ps"
    return f"{_ps(total)} ps"


def _ps(value: float | None) -> str:
    # Three significant figures without trailing zeros: "0.05", "0.0235", "250".
    return "—" if value is None else f"{value:.3g}"


def md_failure_text(run: dict) -> str:
    """ "constant_100K on H2O: temperature runaway after 0.02 of 0.1 ps (study: 250 ps)" """
    reason = (run.get("failure_reason") or "failed").replace("_", " ")
    return f"{run.get('run')} on {run.get('structure')}: {reason} after {md_length_text(run)}"


_KIND_NAMES = {"constant": "100 K", "ramp": "50→800 K ramp"}


def _lengths_by_kind(runs: list[dict]) -> str:
    """The shortest run of each kind: what every structure was run for at least."""
    parts = []
    for kind in ("constant", "ramp", None):
        of_kind = [run for run in runs if run.get("kind") == kind]
        if of_kind:
            shortest = min(of_kind, key=lambda run: run.get("total_ps") or 0.0)
            name = _KIND_NAMES.get(kind or "", "runs")
            parts.append(f"{name} over {md_length_text(shortest)}")
    return ", ".join(parts)


def _holes_verdict(dimers: dict | None) -> Verdict | None:
    if not dimers:
        return None
    curves = list((dimers.get("pairs") or {}).values()) + list(dimers.get("compression") or [])
    holes = sum(bool(curve.get("hole")) for curve in curves)
    level: Level = "bad" if holes else "good"
    return Verdict("Dimer/compression holes", f"{holes} of {len(curves)}", level)


def _warnings_verdict(warnings: list[str] | None) -> Verdict | None:
    if warnings is None:
        return None
    return Verdict("Warnings", str(len(warnings)), "warn" if warnings else "good")
