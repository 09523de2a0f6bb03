"""When an MD run stops being physical (science.md §3: "blow-up or unphysical distortion before
the end"), checked after every step; the first failure ends the run and names its reason.

In order of the checks:
- not_finite: energy, forces or positions are not numbers.
- close_contact: two atoms closer than half the sum of their covalent radii.
- bonds_changed: a bond of the start structure broke, or a new one formed. Bonds are ASE's
  natural cutoffs (covalent radii; a pair is bonded when closer than the sum of its radii), read
  with hysteresis so that thermal vibration does not flicker a bond on and off: a pair is bonded
  at the start within BONDED_AT_START × that sum, broken beyond BROKEN_BEYOND ×, newly formed within
  FORMED_WITHIN × (the natural cutoff itself).
- temperature_runaway: the mean temperature over the last TEMPERATURE_WINDOW_FS is far outside
  the thermostat's target: above max(RUNAWAY_FACTOR × target, target + RUNAWAY_MARGIN_K), or, at a
  constant target, below target / RUNAWAY_FACTOR. A structure sliding into a hole of the model releases its potential
  energy as heat faster than the thermostat removes it; a sound model started from a structure
  of its training distribution stays within a few hundred kelvin of the target.
- energy_drift: the total energy moved by more than 1 eV/atom from the start.
"""

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import ase
import numpy as np
from ase.data import chemical_symbols
from ase.neighborlist import natural_cutoffs

FailureReason = Literal[
    "not_finite", "close_contact", "bonds_changed", "temperature_runaway", "energy_drift"
]
Failure = tuple[FailureReason, str]  # reason and a message naming the step

# science.md §3 (random structure search): closer than half the sum of covalent radii is
# unphysical for any bond.
MIN_DISTANCE_FRACTION = 0.5
# Multiples of the natural cutoff (sum of covalent radii). Bond lengths sit at 0.9-1.1 of it and
# vibrate by a few per cent even at 800 K; the second shell of a close-packed metal sits at 1.37.
BONDED_AT_START = 1.2
BROKEN_BEYOND = 1.6
FORMED_WITHIN = 1.0
TEMPERATURE_WINDOW_FS = 50.0  # the thermostat's relaxation time (50 fs): one window averages it
RUNAWAY_FACTOR = 3.0
RUNAWAY_MARGIN_K = 500.0
# Heating 50 → 800 K adds ~0.1 eV/atom of kinetic energy; 1 eV/atom is a runaway, not heat.
MAX_ENERGY_DRIFT_EV_PER_ATOM = 1.0


@dataclass(frozen=True)
class Criteria:
    min_distance_fraction: float = MIN_DISTANCE_FRACTION
    bonded_at_start: float = BONDED_AT_START
    broken_beyond: float = BROKEN_BEYOND
    formed_within: float = FORMED_WITHIN
    temperature_window_fs: float = TEMPERATURE_WINDOW_FS
    runaway_factor: float = RUNAWAY_FACTOR
    runaway_margin_k: float = RUNAWAY_MARGIN_K
    max_energy_drift_ev_per_atom: float = MAX_ENERGY_DRIFT_EV_PER_ATOM

    def temperature_band(self, target_k: float) -> tuple[float, float]:
        return (
            target_k / self.runaway_factor,
            max(self.runaway_factor * target_k, target_k + self.runaway_margin_k),
        )


class Monitor:
    """Checks each new state of a run against the criteria; remembers the worst seen."""

    def __init__(self, atoms: ase.Atoms, criteria: Criteria, timestep_fs: float) -> None:
        self.criteria = criteria
        self.reference_energy = float(atoms.get_total_energy())
        self.max_drift = 0.0
        self.peak_temperature_k = 0.0  # highest mean over the window (or the steps so far)
        self._min_ratio = math.inf
        self._sums = _radius_sums(atoms)
        ratios = self._ratios(atoms)
        self._bonded = ratios < criteria.bonded_at_start
        if ratios.size:
            self._min_ratio = float(ratios.min())
        window = max(1, round(criteria.temperature_window_fs / timestep_fs))
        self._temperatures: deque[float] = deque(maxlen=window)
        self._targets: deque[float] = deque(maxlen=window)

    @property
    def min_distance_ratio(self) -> float | None:
        return None if math.isinf(self._min_ratio) else self._min_ratio

    @property
    def bonds_at_start(self) -> int:
        return int(np.triu(self._bonded, 1).sum())

    def failure(self, atoms: ase.Atoms, step: int, target_k: float, last: bool) -> Failure | None:
        """`last`: the run's final step, where a window not yet full is judged all the same."""
        # Finite first: distances and energies of NaN positions mean nothing.
        if not _is_finite(atoms):
            return "not_finite", f"step {step}: energy, forces or positions are not finite"
        ratios = self._ratios(atoms)
        return (
            self._close_contact(atoms, ratios, step)
            or self._bonds_changed(atoms, ratios, step)
            or self._temperature(atoms, step, target_k, last)
            or self._energy_drift(atoms, step)
        )

    def _ratios(self, atoms: ase.Atoms) -> np.ndarray:
        """Distances over the sum of covalent radii, all pairs (the diagonal is infinite)."""
        if len(atoms) < 2:
            return np.full((len(atoms), len(atoms)), np.inf)
        # All pairs by minimum image, not a binned neighbour list: a structure that has just
        # exploded spans kilometres.
        ratios = atoms.get_all_distances(mic=bool(atoms.pbc.any())) / self._sums
        np.fill_diagonal(ratios, np.inf)
        return ratios

    def _close_contact(self, atoms: ase.Atoms, ratios: np.ndarray, step: int) -> Failure | None:
        if not ratios.size:
            return None
        first, second = np.unravel_index(np.argmin(ratios), ratios.shape)
        ratio = float(ratios[first, second])
        self._min_ratio = min(ratio, self._min_ratio)
        if ratio >= self.criteria.min_distance_fraction:
            return None
        return "close_contact", (
            f"step {step}: {_pair(atoms, int(first), int(second))} are {ratio:.2f} × the sum of "
            f"their covalent radii apart (limit {self.criteria.min_distance_fraction})"
        )

    def _bonds_changed(self, atoms: ase.Atoms, ratios: np.ndarray, step: int) -> Failure | None:
        broken = np.argwhere(np.triu(self._bonded & (ratios > self.criteria.broken_beyond), 1))
        formed = np.argwhere(np.triu(~self._bonded & (ratios < self.criteria.formed_within), 1))
        if not len(broken) and not len(formed):
            return None
        parts = []
        if len(broken):
            first, second = broken[0]
            parts.append(
                f"{len(broken)} bond(s) of the start structure broke "
                f"({_pair(atoms, first, second)} at {ratios[first, second]:.2f} × their bond "
                f"cutoff, limit {self.criteria.broken_beyond})"
            )
        if len(formed):
            first, second = formed[0]
            parts.append(
                f"{len(formed)} new bond(s) formed "
                f"({_pair(atoms, first, second)} at {ratios[first, second]:.2f} × their bond "
                f"cutoff, unbonded at the start)"
            )
        return "bonds_changed", f"step {step}: " + "; ".join(parts)

    def _temperature(
        self, atoms: ase.Atoms, step: int, target_k: float, last: bool
    ) -> Failure | None:
        self._temperatures.append(float(atoms.get_temperature()))
        self._targets.append(target_k)
        mean = float(np.mean(self._temperatures))
        self.peak_temperature_k = max(self.peak_temperature_k, mean)
        full = len(self._temperatures) == self._temperatures.maxlen
        if not full and not last:
            return None
        target = float(np.mean(self._targets))
        low, high = self.criteria.temperature_band(target)
        # Too cold only counts over a full window at a constant target: the thermostat lags a
        # ramp by about its relaxation time, and a short run's first steps are all transient.
        steady = full and max(self._targets) - min(self._targets) < 1.0
        if mean <= high and (mean >= low or not steady):
            return None
        window = self.criteria.temperature_window_fs
        return "temperature_runaway", (
            f"step {step}: mean temperature over the last {window:.3g} fs is {mean:.0f} K, "
            f"target {target:.0f} K (band {low:.0f}-{high:.0f} K)"
        )

    def _energy_drift(self, atoms: ase.Atoms, step: int) -> Failure | None:
        drift = abs(float(atoms.get_total_energy()) - self.reference_energy) / len(atoms)
        self.max_drift = max(self.max_drift, drift)
        limit = self.criteria.max_energy_drift_ev_per_atom
        if drift <= limit:
            return None
        return "energy_drift", (
            f"step {step}: total energy changed by {drift:.3g} eV/atom (limit {limit})"
        )


def _radius_sums(atoms: ase.Atoms) -> np.ndarray:
    radii = np.asarray(natural_cutoffs(atoms), dtype=float)
    return radii[:, None] + radii[None, :]


def _pair(atoms: ase.Atoms, first: int, second: int) -> str:
    symbols = [chemical_symbols[z] for z in atoms.numbers[[first, second]]]
    return f"atoms {first} ({symbols[0]}) and {second} ({symbols[1]})"


def _is_finite(atoms: ase.Atoms) -> bool:
    return bool(
        np.isfinite(atoms.get_potential_energy())
        and np.isfinite(atoms.positions).all()
        and np.isfinite(atoms.get_forces()).all()
    )
