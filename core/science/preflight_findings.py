"""Preflight's findings: pure functions from the data and the foundation's predictions to what
a researcher should know before training — E0 residuals per element, a reference mismatch the job's
E0s leave uncorrected, labels in the wrong units, duplicates, elements the foundation does not know
— and a suggested strategy and E0 method with the reason. Running the foundation to get those
predictions is core.science.preflight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import ase
import numpy as np

from core.data.splits import exact_duplicate_groups, near_duplicate_groups
from core.science.e0s import (
    E0_MISMATCH_MEV_PER_ATOM,
    E0Residuals,
    average_e0_values,
    elements_of,
    energy_rmse_with_e0s,
    fit_e0_residuals,
)
from core.science.label_units import (
    ENERGY_UNITS,
    FORCE_UNITS,
    PLAUSIBLE_SCALE,
    UNIT_MIN_R2,
    ScaleFit,
    energy_scale,
    force_scale,
    matching_unit,
)
from core.science.preflight_suggestion import Suggestion, suggest
from core.science.spec import (
    FOUNDATION_E0_METHODS,
    E0MethodName,
    e0_method_of,
)

Severity = Literal["info", "warning", "blocking"]

# A per-element offset this large is not a functional or code difference (a few eV at most) but a
# different zero of energy: all-electron totals against pseudopotential energies, for example.
ABSOLUTE_REFERENCE_EV = 50.0
# The E0 methods whose E0s follow from the foundation: a large error left with them is the data's.
BLOCKING_E0_METHODS = FOUNDATION_E0_METHODS


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreflightReport:
    n_configs: int
    elements: list[str]
    foundation_errors: dict[str, float | None]
    e0_residuals: dict[str, float]
    findings: list[Finding]
    suggestion: Suggestion | None
    seconds: float = 0.0

    @property
    def blocking(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "blocking"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_configs": self.n_configs,
            "elements": self.elements,
            "foundation_errors": self.foundation_errors,
            "e0_residuals": self.e0_residuals,
            "findings": [finding.to_dict() for finding in self.findings],
            "blocking": [finding.code for finding in self.blocking],
            "suggestion": asdict(self.suggestion) if self.suggestion else None,
            "seconds": self.seconds,
        }


def reference_findings(
    residuals: E0Residuals, e0_method: str, rmse_with_job_e0s: float | None
) -> list[Finding]:
    """Whether the data sit at another reference than the foundation, and whether the job's E0s
    correct it. Blocking when the E0s the job would train with leave an error above 500 meV/atom
    (science.md §2) and come from the foundation (its own, or re-estimated from it); E0s the user
    brings (isolated atoms, explicit values) or fits on the data alone (average) only warn, since
    the remaining error may be the foundation's interaction energy rather than the E0s."""
    findings: list[Finding] = []
    largest = max(residuals.delta.items(), key=lambda item: abs(item[1]), default=None)
    offset = residuals.mean_offset_per_atom
    if largest is not None and max(abs(largest[1]), abs(offset)) > ABSOLUTE_REFERENCE_EV:
        # With one composition (rank below the element count) only the mean offset is known.
        identifiable = residuals.rank == len(residuals.delta)
        where = (
            f"up to {largest[1]:+.0f} eV per {largest[0]} atom"
            if identifiable
            else f"{offset:+.0f} eV/atom on average"
        )
        findings.append(
            Finding(
                "absolute_reference",
                "info",
                f"the data's energies sit {where} from the foundation's: a different zero of "
                "energy (e.g. all-electron against pseudopotential totals); re-estimated or "
                "isolated-atom E0s absorb it",
                {"element": largest[0], "delta_ev": largest[1], "mean_offset_ev_per_atom": offset},
            )
        )
    before = residuals.energy_rmse_before
    if before <= E0_MISMATCH_MEV_PER_ATOM:
        return findings
    after = rmse_with_job_e0s
    details = {
        "energy_rmse_before_mev_per_atom": before,
        # None when the job's E0s cannot be known before it runs (never the before-value).
        "energy_rmse_with_job_e0s_mev_per_atom": after,
        "e0s": e0_method,
    }
    if after is None:
        findings.append(
            Finding(
                "reference_mismatch",
                "warning",
                f"the foundation is {before:.0f} meV/atom off the data with its own E0s (above "
                f"{E0_MISMATCH_MEV_PER_ATOM:.0f} meV/atom); what the job's E0s ({e0_method}) "
                "leave is known only once they are chosen",
                details,
            )
        )
        return findings
    if after <= E0_MISMATCH_MEV_PER_ATOM:
        findings.append(
            Finding(
                "reference_mismatch",
                "info",
                f"the foundation is {before:.0f} meV/atom off the data with its own E0s (another "
                f"level of theory); the job's E0s ({e0_method}) bring it to {after:.1f} meV/atom",
                details,
            )
        )
        return findings
    severity: Severity = "blocking" if e0_method in BLOCKING_E0_METHODS else "warning"
    hint = {
        "foundation": "the data come from another level of theory: use e0s='estimated' or "
        "isolated atoms at the data's level of theory",
        # The best per-element offset is already applied, so what remains is the foundation's
        # interaction energy: far from data it never saw (or units, which energy_units reports).
        "estimated": "even the best per-element offset leaves this error, so the foundation's "
        "interaction energies are far from the data's: structures or chemistry it was not "
        "trained on, or labels from several levels of theory. Fine-tuning may still fix it "
        "(the model learns the difference), or train from scratch",
    }.get(
        e0_method,
        "the E0s come from the data's level of theory, so the rest is the foundation's "
        "interaction energy, which fine-tuning must learn: check that the E0s and the labels "
        "match",
    )
    if severity == "blocking":
        hint += (
            "; to train anyway, add 'reference_mismatch' to preflight.acknowledge in the job spec"
        )
    findings.append(
        Finding(
            "reference_mismatch",
            severity,
            f"E0 mismatch: with the job's E0s ({e0_method}) the foundation is {after:.0f} meV/atom "
            f"off the data (above {E0_MISMATCH_MEV_PER_ATOM:.0f} meV/atom); {hint}",
            details,
        )
    )
    return findings


def unit_findings(energy: ScaleFit | None, forces: ScaleFit | None) -> list[Finding]:
    findings = []
    for label, fit, units, base in (
        ("energy", energy, ENERGY_UNITS, "eV"),
        ("forces", forces, FORCE_UNITS, "eV/Å"),
    ):
        if fit is None or fit.r2 < UNIT_MIN_R2:
            continue
        unit = matching_unit(fit.scale, units)
        details = {"scale": fit.scale, "r2": fit.r2}
        if unit is not None:
            findings.append(
                Finding(
                    f"{label}_units",
                    "blocking",
                    f"{label} labels scale as {fit.scale:.4g}× the foundation's predictions, the "
                    f"factor from {base} to {unit}: convert them to {base} before training",
                    {**details, "unit": unit},
                )
            )
        elif not PLAUSIBLE_SCALE[0] <= fit.scale <= PLAUSIBLE_SCALE[1]:
            findings.append(
                Finding(
                    f"{label}_units",
                    "warning",
                    f"{label} labels vary {fit.scale:.3g}× as much as the foundation's "
                    f"predictions; check that they are in {base}",
                    details,
                )
            )
    return findings


def duplicate_findings(
    configs: Sequence[ase.Atoms],
    energies: np.ndarray | None = None,
    positions: Sequence[int] | None = None,
) -> list[Finding]:
    """Duplicate groups, as `positions` of the configurations in their dataset (the split's
    indices) when given; otherwise as indices into `configs`."""
    findings = []
    exact = exact_duplicate_groups(configs)
    conflicting = [
        group
        for group in exact
        if energies is not None and np.ptp(np.asarray(energies)[group]) > 1e-6
    ]
    near = near_duplicate_groups(configs)
    if positions is not None:
        exact, conflicting, near = (
            [[positions[i] for i in group] for group in groups]
            for groups in (exact, conflicting, near)
        )
    if exact:
        extra = sum(len(group) - 1 for group in exact)
        message = (
            f"{extra} exact duplicate configuration(s) in {len(exact)} group(s) (first: "
            f"{exact[0]}); the split keeps one of each"
        )
        if conflicting:
            message += f"; {len(conflicting)} group(s) carry different energies"
        findings.append(
            Finding(
                "exact_duplicates",
                "warning",
                message,
                {"groups": exact[:20], "conflicting_groups": conflicting[:20]},
            )
        )
    if near:
        findings.append(
            Finding(
                "near_duplicates",
                "info",
                f"{sum(len(group) - 1 for group in near)} near-duplicate configuration(s) in "
                f"{len(near)} group(s) (first: {near[0]}): they add little information and, "
                "split apart, make validation errors optimistic; consider split.group_by",
                {"groups": near[:20]},
            )
        )
    return findings


def unknown_element_findings(
    elements: Sequence[str], known: Sequence[str] | None, *, scratch: bool
) -> list[Finding]:
    if known is None:
        return []
    missing = [symbol for symbol in elements if symbol not in set(known)]
    if not missing:
        return []
    return [
        Finding(
            "unknown_elements",
            "info" if scratch else "blocking",
            f"the foundation does not know {', '.join(missing)}"
            + (
                "" if scratch else "; fine-tune a foundation that covers them or train from scratch"
            ),
            {"elements": missing},
        )
    ]


def acknowledged(findings: list[Finding], codes: Sequence[str]) -> list[Finding]:
    """Blocking findings the user accepted become warnings; unknown elements cannot be accepted,
    since mace cannot train on them."""
    accepted = set(codes) - {"unknown_elements"}
    return [
        Finding(f.code, "warning", f"{f.message} (acknowledged)", f.details)
        if f.severity == "blocking" and f.code in accepted
        else f
        for f in findings
    ]


@dataclass(frozen=True)
class FoundationPredictions:
    energies: np.ndarray  # eV, one per configuration
    forces: list[np.ndarray] | None  # eV/Å, for `force_indices`
    force_indices: list[int]


def e0s_of_method(
    method: str | dict[str, float],
    residuals: E0Residuals,
    foundation_e0s: dict[str, float],
    isolated_energies: dict[str, float],
) -> dict[str, float] | None:
    """The E0s a job with `method` would train with; None for `average`, which ignores the
    foundation, and for isolated atoms that do not cover every element (submission refuses it)."""
    if isinstance(method, dict):
        return dict(method)
    if method == "estimated":
        return {s: foundation_e0s[s] + d for s, d in residuals.delta.items()}
    if method == "foundation":
        return dict(foundation_e0s)
    if method == "isolated_atoms" and set(residuals.delta) <= set(isolated_energies):
        return dict(isolated_energies)
    return None


@dataclass(frozen=True)
class ReferenceCheck:
    residuals: E0Residuals
    # meV/atom left with the E0s the job would train with; None when they are not known yet.
    rmse_with_job_e0s: float | None
    findings: list[Finding]


def check_reference(
    configs: Sequence[ase.Atoms],
    energies: np.ndarray,
    predicted: np.ndarray,
    foundation_e0s: dict[str, float],
    e0_method: E0MethodName | dict[str, float],
    isolated_energies: dict[str, float],
) -> ReferenceCheck:
    """Preflight's reference step, also run at submission (core.workflows.admission): how far the
    foundation is from the data with its own E0s and with the job's, and the findings."""
    residuals = fit_e0_residuals(configs, energies, predicted)
    job_e0s = e0s_of_method(e0_method, residuals, foundation_e0s, isolated_energies)
    if e0_method == "average":
        job_e0s, _ = average_e0_values(configs, energies)
    after = (
        None
        if job_e0s is None
        else energy_rmse_with_e0s(configs, energies, predicted, foundation_e0s, job_e0s)
    )
    findings = reference_findings(residuals, e0_method_of(e0_method), after)
    return ReferenceCheck(residuals, after, findings)


def review(
    configs: Sequence[ase.Atoms],
    energies: np.ndarray,
    forces: Sequence[np.ndarray | None],
    predictions: FoundationPredictions | None,
    *,
    known_elements: Sequence[str] | None,
    foundation_e0s: dict[str, float] | None,
    scratch: bool,
    e0_method: E0MethodName | dict[str, float],
    isolated_energies: dict[str, float],
    acknowledge: Sequence[str] = (),
    positions: Sequence[int] | None = None,
) -> PreflightReport:
    """Every finding on the training configurations (molecules, not isolated atoms);
    `positions` are their places in the dataset, which findings name."""
    elements = elements_of(configs)
    method_name = e0_method_of(e0_method)
    findings = unknown_element_findings(elements, known_elements, scratch=scratch)
    residuals = None
    errors: dict[str, float | None] = {
        "energy_rmse_mev_per_atom": None,
        "energy_rmse_after_e0_fit_mev_per_atom": None,
        "forces_rmse_mev_per_a": None,
        "reference_forces_rms_mev_per_a": _forces_rms(forces),
    }
    if predictions is not None and foundation_e0s is not None:
        reference = check_reference(
            configs, energies, predictions.energies, foundation_e0s, e0_method, isolated_energies
        )
        residuals = reference.residuals
        errors["energy_rmse_mev_per_atom"] = residuals.energy_rmse_before
        errors["energy_rmse_after_e0_fit_mev_per_atom"] = residuals.energy_rmse_after
        findings += reference.findings
        force_fit, errors["forces_rmse_mev_per_a"] = _force_comparison(forces, predictions)
        findings += unit_findings(energy_scale(configs, energies, predictions.energies), force_fit)
    findings += duplicate_findings(configs, energies, positions)
    suggestion = suggest(
        e0_method=method_name,
        isolated_atom_elements=list(isolated_energies),
        elements=elements,
        forces_rmse=errors["forces_rmse_mev_per_a"],
        forces_rms=errors["reference_forces_rms_mev_per_a"],
        residuals=residuals,
        unknown_elements=[
            symbol
            for symbol in elements
            if known_elements is not None and symbol not in set(known_elements)
        ],
        scratch=scratch,
    )
    return PreflightReport(
        n_configs=len(configs),
        elements=elements,
        foundation_errors=errors,
        e0_residuals=residuals.delta if residuals else {},
        findings=acknowledged(findings, acknowledge),
        suggestion=suggestion,
    )


def _force_comparison(
    forces: Sequence[np.ndarray | None], predictions: FoundationPredictions
) -> tuple[ScaleFit | None, float | None]:
    if predictions.forces is None:
        return None, None
    pairs = [
        (reference, predicted)
        for i, predicted in zip(predictions.force_indices, predictions.forces, strict=True)
        if (reference := forces[i]) is not None
    ]
    if not pairs:
        return None, None
    reference = np.concatenate([np.ravel(r) for r, _ in pairs])
    predicted = np.concatenate([np.ravel(p) for _, p in pairs])
    rmse = float(np.sqrt(np.mean((reference - predicted) ** 2)) * 1000.0)
    return force_scale(reference, predicted), rmse


def _forces_rms(forces: Sequence[np.ndarray | None]) -> float | None:
    present = [np.ravel(f) for f in forces if f is not None]
    if not present:
        return None
    return float(np.sqrt(np.mean(np.concatenate(present) ** 2)) * 1000.0)
