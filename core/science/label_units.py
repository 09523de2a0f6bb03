"""Which units a dataset's labels are in, read from how they scale against the foundation's
predictions of the same structures (preflight's unit check)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import ase
import numpy as np

from core.science.e0s import (
    composition_matrix,
    elements_of,
)

# Labels divided by the foundation's predictions landing within this of a conversion factor, with
# the foundation explaining most of their variation, are taken to be in that unit. The factors
# people confuse are at least 1.9x apart (Hartree and Rydberg, eV/Å and eV/Bohr).
UNIT_FACTOR_TOLERANCE = 0.25
UNIT_MIN_R2 = 0.8
# Outside this range the labels' scale disagrees with the foundation's, whatever the cause.
PLAUSIBLE_SCALE = (0.5, 2.0)

EV_PER_HARTREE = 27.211386
BOHR_IN_ANGSTROM = 0.52917721
KCAL_PER_MOL_PER_EV = 23.060548
KJ_PER_MOL_PER_EV = 96.485332
# Label value / value in eV (or eV/Å) for the units people mistake for them.
ENERGY_UNITS: dict[str, float] = {
    "kcal/mol": KCAL_PER_MOL_PER_EV,
    "kJ/mol": KJ_PER_MOL_PER_EV,
    "Hartree": 1 / EV_PER_HARTREE,
    "Rydberg": 2 / EV_PER_HARTREE,
    "meV": 1000.0,
}
FORCE_UNITS: dict[str, float] = {
    "eV/Bohr": BOHR_IN_ANGSTROM,
    "Hartree/Bohr": BOHR_IN_ANGSTROM / EV_PER_HARTREE,
    "Hartree/Å": 1 / EV_PER_HARTREE,
    "kcal/mol/Å": KCAL_PER_MOL_PER_EV,
    "kJ/mol/Å": KJ_PER_MOL_PER_EV,
    "meV/Å": 1000.0,
}


@dataclass(frozen=True)
class ScaleFit:
    scale: float
    r2: float


def energy_scale(
    configs: Sequence[ase.Atoms], reference: np.ndarray, predicted: np.ndarray
) -> ScaleFit | None:
    """Reference ≈ s · foundation + per-element constants: s is the labels' unit relative to eV.
    None when the energies do not vary beyond what composition explains (too few configurations)."""
    elements = elements_of(configs)
    a = composition_matrix(configs, elements)
    if len(configs) < a.shape[1] + 3:
        return None
    if np.linalg.matrix_rank(np.column_stack([a, predicted])) <= np.linalg.matrix_rank(a):
        return None
    # Project out composition, then regress what varies: s and the share of variance it explains.
    projector = a @ np.linalg.pinv(a)
    x = np.asarray(predicted, float) - projector @ predicted
    y = np.asarray(reference, float) - projector @ reference
    return _scale_fit(x, y)


def force_scale(reference: np.ndarray, predicted: np.ndarray) -> ScaleFit | None:
    """Reference forces ≈ s · foundation forces, over every component."""
    return _scale_fit(np.ravel(predicted), np.ravel(reference))


def _scale_fit(x: np.ndarray, y: np.ndarray) -> ScaleFit | None:
    sxx = float(x @ x)
    syy = float(y @ y)
    if sxx <= 0 or syy <= 0 or not math.isfinite(sxx + syy):
        return None
    # Reduced major axis: the foundation's own errors sit in x, and a least-squares slope of y on
    # x would shrink towards zero by r² (a kcal/mol dataset read as 19.6 instead of 23.1).
    scale = math.copysign(math.sqrt(syy / sxx), float(x @ y))
    r2 = float(x @ y) ** 2 / (sxx * syy)
    return ScaleFit(scale, r2)


def matching_unit(scale: float, units: dict[str, float]) -> str | None:
    for unit, factor in units.items():
        if abs(scale / factor - 1) <= UNIT_FACTOR_TOLERANCE:
            return unit
    return None
