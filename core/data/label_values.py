"""The labels one configuration carries, as numbers in mace's units and sign conventions, and
which labels apply to it (an isolated atom has no forces to learn, a molecule no stress)."""

from dataclasses import dataclass
from typing import Any

import ase
import numpy as np

from core.data.labels import AUTOMATIC, LabelKeys, find_key, raw_value


@dataclass(frozen=True)
class Labels:
    energy: float | None  # eV
    forces: np.ndarray | None  # (n_atoms, 3), eV/Å
    stress: np.ndarray | None  # 3x3, eV/Å^3, ASE sign convention


def labels_of(atoms: ase.Atoms, keys: LabelKeys = AUTOMATIC) -> Labels:
    energy_key = find_key(atoms, "energy", keys)
    forces_key = find_key(atoms, "forces", keys)
    return Labels(
        energy=None if energy_key is None else as_float(raw_value(atoms, energy_key)),
        forces=None if forces_key is None else as_array(raw_value(atoms, forces_key)),
        stress=stress_of(atoms, keys),
    )


def is_isolated_atom(atoms: ase.Atoms) -> bool:
    """A single atom in vacuum (an E0 reference): no periodicity, or a config_type that says
    so ("IsolatedAtom", "isolated_atom"). A one-atom periodic cell is a bulk crystal."""
    if len(atoms) != 1:
        return False
    config_type = str(atoms.info.get("config_type", "")).lower().replace("_", "")
    return not atoms.pbc.any() or "isolatedatom" in config_type


def label_applies(atoms: ase.Atoms, label: str) -> bool:
    if label == "energy":
        return True
    if label == "forces":
        return not is_isolated_atom(atoms)
    return bool(atoms.pbc.any())  # stress and virials only mean something for periodic cells


def as_float(value: Any) -> float | None:
    """None unless value is one number; ASE keeps unparsable values as strings or booleans."""
    array = np.asarray(value)
    if array.shape != () or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array)


def as_array(value: Any) -> np.ndarray | None:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number):
        return None
    return array.astype(float)


def stress_of(atoms: ase.Atoms, keys: LabelKeys = AUTOMATIC) -> np.ndarray | None:
    stress_key = find_key(atoms, "stress", keys)
    if stress_key is not None:
        return as_matrix(raw_value(atoms, stress_key))
    virials_key = find_key(atoms, "virials", keys)
    volume = atoms.cell.volume
    if virials_key is None or volume <= 0:
        return None
    # mace's convention (modules/utils.py): stress = -virials / volume.
    return -as_matrix(raw_value(atoms, virials_key)) / volume


def as_matrix(values: Any) -> np.ndarray:
    flat = np.asarray(values, dtype=float).ravel()
    if flat.size == 9:
        return flat.reshape(3, 3)
    xx, yy, zz, yz, xz, xy = flat  # Voigt order, as ASE and mace write it
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
