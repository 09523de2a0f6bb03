"""The strategy and E0 method preflight suggests for a dataset, with the reason (science.md §2,
§4), from what the foundation's predictions showed."""

from collections.abc import Sequence
from dataclasses import dataclass

from core.science.e0s import E0_MISMATCH_MEV_PER_ATOM, E0Residuals


@dataclass(frozen=True)
class Suggestion:
    strategy: str
    e0s: str
    reason: str


def suggest(
    *,
    e0_method: str,
    isolated_atom_elements: Sequence[str],
    elements: Sequence[str],
    forces_rmse: float | None,
    forces_rms: float | None,
    residuals: E0Residuals | None,
    unknown_elements: Sequence[str] = (),
    scratch: bool = False,
) -> Suggestion:
    """A strategy and an E0 method with the reason (science.md §2, §4); only combinations the
    job submission accepts (fine-tuning needs every element known; scratch has no foundation
    to estimate E0s against)."""
    if unknown_elements or scratch:
        return _scratch_suggestion(elements, isolated_atom_elements, unknown_elements)
    if set(elements) <= set(isolated_atom_elements):
        e0s = "isolated_atoms"
        e0_reason = "isolated atoms at the data's level of theory cover every element"
    else:
        e0s = "estimated"
        e0_reason = "re-estimated E0s fix the foundation's offset to the data's level of theory"
        if residuals is not None and residuals.energy_rmse_before <= E0_MISMATCH_MEV_PER_ATOM:
            e0_reason += (
                f" (the foundation is already {residuals.energy_rmse_before:.0f} meV/atom close)"
            )
    if e0_method == "average":
        e0_reason += "; averaged E0s gave 2-3x worse forces and unstable MD in the study"
    if forces_rmse is not None and forces_rms and forces_rmse < 0.1 * forces_rms:
        strategy = "lora"
        reason = (
            f"the foundation's force error ({forces_rmse:.0f} meV/Å) is already under 10 % of the "
            "data's force scale: a low-capacity correction keeps what it knows; use "
            "pseudolabel_replay for breadth"
        )
    else:
        strategy = "naive"
        reason = (
            "one target system, accuracy first: naive fine-tuning is the study's best there; "
            "for breadth (screening, structure search, MD far from the data) run "
            "pseudolabel_replay side by side"
        )
    return Suggestion(strategy, e0s, f"{reason}. E0s: {e0_reason}")


def _scratch_suggestion(
    elements: Sequence[str], isolated_atom_elements: Sequence[str], unknown: Sequence[str]
) -> Suggestion:
    if set(elements) <= set(isolated_atom_elements):
        e0s, e0_reason = "isolated_atoms", "isolated atoms cover every element"
    else:
        e0s = "average"
        e0_reason = (
            "without a foundation, E0s are fitted on the data (or add isolated atoms at the "
            "data's level of theory and use isolated_atoms)"
        )
    reason = (
        f"the foundation does not know {', '.join(unknown)}, so fine-tuning it is refused: "
        "train from scratch or choose a foundation that covers them"
        if unknown
        else "a scratch model trains on the data alone"
    )
    return Suggestion("scratch", e0s, f"{reason}. E0s: {e0_reason}")
