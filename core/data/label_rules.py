"""Which labels a file carries and whether every configuration keeps to it: the same labels,
under the same keys, with values of the right shape that are finite."""

import ase
import numpy as np

from core.data.label_values import as_array, as_float, label_applies
from core.data.labels import LabelKeys, find_key, raw_value, recognised_keys


class LabelRules:
    """Which labels a file carries, decided by its first configurations and held throughout:
    energy and forces on every configuration, energy alone (a set for evaluation), or no label
    at all (structures to pseudolabel)."""

    def __init__(self, keys: LabelKeys) -> None:
        self.keys = keys
        self.labelled = True
        # Decided by the first configuration of more than one atom: False for energy-only sets.
        self.forces: bool | None = None

    def problem(self, atoms: ase.Atoms, found: dict[str, str | None], first: bool) -> str | None:
        """`found`: each label's key in `atoms` (None where it has none)."""
        has_labels = found["energy"] is not None or found["forces"] is not None
        if first:
            # Structures without any label are a legitimate upload: replay sets that the
            # foundation pseudolabels. Then no configuration may carry labels.
            self.labelled = has_labels
        if not self.labelled:
            if has_labels:
                return (
                    "has energy or forces, but configuration 1 has none; label every "
                    "configuration or none (unlabelled structures can only be pseudolabelled)"
                )
            return None
        checks = (self._energy_problem, self._forces_problem, self._stress_problem)
        return next((problem for check in checks if (problem := check(atoms, found))), None)

    def _looked_for(self, label: str) -> str:
        named = self.keys.named(label)
        return f"{label}_key {named!r}" if named else ", ".join(recognised_keys(label))

    def _energy_problem(self, atoms: ase.Atoms, found: dict[str, str | None]) -> str | None:
        key = found["energy"]
        if key is None:
            hint = ""
            free = find_key(atoms, "energy", LabelKeys(energy_key="free_energy"))
            if free is not None and self.keys.energy_key is None:
                hint = f"; it has {free}: upload with energy_key={free} to train on it"
            return f"no energy (looked for {self._looked_for('energy')}){hint}"
        raw = raw_value(atoms, key)
        energy = as_float(raw)
        if energy is None:
            return f"{key} is not a number: {raw!r}"
        if np.isnan(energy):
            return f"{key} is NaN"
        if np.isinf(energy):
            return f"{key} is infinite"
        return None

    def _forces_problem(self, atoms: ase.Atoms, found: dict[str, str | None]) -> str | None:
        key = found["forces"]
        if label_applies(atoms, "forces") and self.forces is None:
            self.forces = key is not None
        if key is None:
            if not label_applies(atoms, "forces") or not self.forces:
                # An isolated atom is labelled by its energy alone; an energy-only set (a
                # dihedral scan) evaluates models, though it cannot train one.
                return None
            return (
                f"no forces for {len(atoms)} atoms (looked for {self._looked_for('forces')}), "
                "but earlier configurations have forces; label forces on every configuration "
                "but isolated atoms, or on none (an energy-only set, for evaluation)"
            )
        if self.forces is False and label_applies(atoms, "forces"):
            return (
                "has forces, but earlier configurations have none; label forces on every "
                "configuration but isolated atoms, or on none (an energy-only set)"
            )
        return _forces_value_problem(atoms, key)

    def _stress_problem(self, atoms: ase.Atoms, found: dict[str, str | None]) -> str | None:
        for label in ("stress", "virials"):
            key = found[label]
            if key is None:
                continue
            raw = raw_value(atoms, key)
            values = as_array(raw)
            if values is None:
                return f"{key} is not numeric: {raw!r}"
            if values.size not in (6, 9):
                return f"{key} has {values.size} values, expected 6 (Voigt) or 9 (3x3 matrix)"
            if not np.isfinite(values).all():
                return f"{key} is not finite: {values.ravel()}"
        return None


def _forces_value_problem(atoms: ase.Atoms, key: str) -> str | None:
    forces = as_array(raw_value(atoms, key))
    if forces is None:
        return f"{key} are not numbers"
    if forces.ndim not in (1, 2) or len(forces) != len(atoms):
        return f"{key} has shape {forces.shape}, expected ({len(atoms)}, 3)"
    columns = forces.shape[1] if forces.ndim == 2 else 1
    if columns != 3:
        return f"{key} has {columns} columns per atom, expected 3"
    invalid = np.flatnonzero(~np.isfinite(forces).all(axis=1))
    if invalid.size:
        return f"{key} of atom {invalid[0] + 1} are not finite: {forces[invalid[0]]}"
    return None


def record_keys(found: dict[str, str | None], file_keys: dict[str, str]) -> str | None:
    """Remember the key each label uses; a problem if this configuration uses another one."""
    for label, key in found.items():
        if key is None:
            continue
        expected = file_keys.setdefault(label, key)
        if key != expected:
            return (
                f"{label} is stored as {key!r}, but earlier configurations use {expected!r}; "
                "use one key throughout the file"
            )
    return None
