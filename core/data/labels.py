"""Which keys of an extxyz configuration hold its labels, in the dialects researchers' files use.

MACE writes ``REF_energy``, janus-core ``dft_energy``, GAP-era files ``energy``/``force``/
``virial``; ASE >= 3.23 moves ``energy``, ``free_energy``, ``forces`` and ``stress`` into a
SinglePointCalculator and leaves every other name in ``atoms.info`` / ``atoms.arrays``. Keys are
matched case-insensitively and reported as the file spells them.
"""

from dataclasses import asdict, dataclass
from typing import Any

import ase

LABELS = ("energy", "forces", "stress", "virials")
# Stems each label is recognised by, with any of PREFIXES before them, in this order of preference.
STEMS: dict[str, tuple[str, ...]] = {
    "energy": ("energy", "total_energy"),
    "forces": ("forces", "force"),
    "stress": ("stress",),
    "virials": ("virials", "virial"),
}
# A prefixed key wins over a bare one: files written by ASE with a calculator attached carry the
# calculator's own predictions as bare `energy`/`forces` next to the reference `REF_*` labels.
PREFIXES = ("REF_", "DFT_", "")
# Read only when the upload names it: a smeared free energy is not the energy forces derive from.
ONLY_WHEN_NAMED = ("free_energy",)


@dataclass(frozen=True)
class LabelKeys:
    """Keys an upload names for its labels (the names of mace's --energy_key ... flags);
    None recognises the label by the common dialects."""

    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    virials_key: str | None = None

    def named(self, label: str) -> str | None:
        return getattr(self, f"{label}_key")

    def to_dict(self) -> dict[str, str]:
        return {name: key for name, key in asdict(self).items() if key is not None}

    @classmethod
    def of(cls, values: dict[str, Any] | None) -> "LabelKeys":
        values = values or {}
        return cls(**{f"{label}_key": values.get(f"{label}_key") or None for label in LABELS})


AUTOMATIC = LabelKeys()


def recognised_keys(label: str) -> list[str]:
    """The keys tried for `label` when the upload names none, in order."""
    return [prefix + stem for stem in STEMS[label] for prefix in PREFIXES]


def all_label_keys() -> set[str]:
    """Lower-cased names that hold a label in some dialect (dropped from a normalised copy)."""
    return {key.lower() for label in LABELS for key in recognised_keys(label)} | {
        key.lower() for key in ONLY_WHEN_NAMED
    }


def find_key(atoms: ase.Atoms, label: str, keys: LabelKeys = AUTOMATIC) -> str | None:
    """The key holding `label` in this configuration, as the file spells it; None if absent."""
    named = keys.named(label)
    wanted = [named] if named is not None else recognised_keys(label)
    exact = set(_names(atoms))
    lowered = {name.lower(): name for name in reversed(_names(atoms))}
    for candidate in wanted:
        if candidate in exact:
            return candidate
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


def competing_keys(atoms: ase.Atoms, label: str) -> list[str]:
    """Every recognised key of `label` the configuration holds, as the file spells them; more
    than one means the reader chose (the first), which the user should hear about."""
    lowered = {name.lower(): name for name in reversed(_names(atoms))}
    return [lowered[key.lower()] for key in recognised_keys(label) if key.lower() in lowered]


def raw_value(atoms: ase.Atoms, key: str) -> Any:
    if atoms.calc is not None and key in atoms.calc.results:
        return atoms.calc.results[key]
    if key in atoms.info:
        return atoms.info[key]
    return atoms.arrays.get(key)


def stored_names(atoms: ase.Atoms) -> list[str]:
    """Every per-configuration and per-atom value name, to list in a message."""
    return sorted(set(_names(atoms)) - {"numbers", "positions"})


def _names(atoms: ase.Atoms) -> list[str]:
    # In raw_value's order of lookup, so the first spelling found is the one read.
    calc = list(atoms.calc.results) if atoms.calc is not None else []
    return [*calc, *atoms.info, *atoms.arrays]
