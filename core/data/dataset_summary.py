"""What an accepted upload holds, gathered one configuration at a time: counts, elements,
labels and their keys, and what a researcher should hear about the labels before training."""

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import ase
from ase.data import atomic_numbers, chemical_symbols

from core.data.label_values import is_isolated_atom, label_applies
from core.data.labels import LABELS, LabelKeys, competing_keys, stored_names


@dataclass(frozen=True)
class DatasetSummary:
    n_configs: int
    n_atoms: int
    elements: list[str]
    element_counts: dict[str, int]
    labels: list[str]
    energy_key: str | None
    forces_key: str | None
    stress_key: str | None
    config_types: dict[str, int]
    n_periodic: int
    # Elements with an isolated atom (core.data.label_values.is_isolated_atom) that has an
    # energy: E0 references.
    isolated_atom_elements: list[str]
    sha256: str
    size_bytes: int
    virials_key: str | None = None
    # Per label: configurations carrying it, of those it applies to ({"stress": {"configs": 100,
    # "of": 120}}); stress and virials apply to periodic configurations, forces to all but
    # isolated atoms.
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # Keys the upload named (energy_key ...): the file is read with them wherever it is used.
    requested_keys: dict[str, str] = field(default_factory=dict)
    # What the user should know about the labels (not found, energy only, partial stress).
    warnings: list[str] = field(default_factory=list)
    # Elements of the configurations other than isolated atoms: what a model trained on the
    # data learns (an element present only as an isolated atom is an E0 reference, no more).
    structure_elements: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunningSummary:
    """What DatasetSummary reports, gathered one configuration at a time (no list of them)."""

    def __init__(self, keys: LabelKeys) -> None:
        self.keys = keys
        self.n_configs = 0
        self.n_atoms = 0
        self.element_counts: Counter[int] = Counter()
        self.config_types: Counter[str] = Counter()
        self.n_periodic = 0
        self.isolated_atom_elements: set[str] = set()
        self.structure_numbers: set[int] = set()
        # Per label: configurations that carry it among those it applies to.
        self.present = dict.fromkeys(LABELS, 0)
        self.applicable = dict.fromkeys(LABELS, 0)
        self.trained_stress = 0
        self.first_names: list[str] = []
        self.competing: dict[str, list[str]] = {}
        self.named_found = {label: False for label in keys.to_dict()}

    def add(self, atoms: ase.Atoms, found: dict[str, str | None]) -> None:
        """`found`: each label's key in `atoms` (None where it has none)."""
        if not self.n_configs:
            self.first_names = stored_names(atoms)
            # Labels the first configuration holds under several unnamed keys: say which is read.
            self.competing = {
                label: names
                for label in LABELS
                if self.keys.named(label) is None and len(names := competing_keys(atoms, label)) > 1
            }
        self.n_configs += 1
        self.n_atoms += len(atoms)
        self.element_counts.update(atoms.numbers.tolist())
        self.config_types[str(atoms.info.get("config_type", "default"))] += 1
        self.n_periodic += bool(atoms.pbc.any())
        if is_isolated_atom(atoms) and found["energy"] is not None:
            self.isolated_atom_elements.add(atoms.get_chemical_symbols()[0])
        if not is_isolated_atom(atoms):
            self.structure_numbers.update(atoms.numbers.tolist())
        for label in LABELS:
            if label_applies(atoms, label):
                self.applicable[label] += 1
                self.present[label] += found[label] is not None
        # What _stress_of reads: stress, or virials over a cell with a volume.
        has_stress = found["stress"] is not None or (
            found["virials"] is not None and atoms.cell.volume > 0
        )
        if label_applies(atoms, "stress") and has_stress:
            self.trained_stress += 1
        for label in self.named_found:
            self.named_found[label] |= found[label.removesuffix("_key")] is not None

    def unfound_named_key(self) -> str | None:
        """A key the upload named that no configuration holds: a typo, not a missing label."""
        named = self.keys.to_dict()
        for label, found in self.named_found.items():
            if not found:
                return (
                    f"{label} {named[label]!r} is in no configuration; configuration 1 holds "
                    f"{', '.join(self.first_names) or 'no values'}"
                )
        return None

    def label_counts(self) -> dict[str, dict[str, int]]:
        return {
            label: {"configs": self.present[label], "of": self.applicable[label]}
            for label in LABELS
        }

    def result(self, file_keys: dict[str, str], sha256: str, size_bytes: int) -> DatasetSummary:
        element_counts = {
            chemical_symbols[z]: count for z, count in sorted(self.element_counts.items())
        }
        label_counts = self.label_counts()
        return DatasetSummary(
            n_configs=self.n_configs,
            n_atoms=self.n_atoms,
            elements=list(element_counts),
            element_counts=element_counts,
            labels=[label for label, count in label_counts.items() if count["configs"]],
            energy_key=file_keys.get("energy"),
            forces_key=file_keys.get("forces"),
            stress_key=file_keys.get("stress"),
            virials_key=file_keys.get("virials"),
            config_types=dict(self.config_types),
            n_periodic=self.n_periodic,
            isolated_atom_elements=sorted(
                self.isolated_atom_elements, key=atomic_numbers.__getitem__
            ),
            sha256=sha256,
            size_bytes=size_bytes,
            label_counts=label_counts,
            requested_keys=self.keys.to_dict(),
            warnings=label_warnings(
                self.first_names, self.competing, label_counts, self.trained_stress
            ),
            structure_elements=[chemical_symbols[z] for z in sorted(self.structure_numbers)],
        )


def label_warnings(
    first_names: list[str],
    competing: dict[str, list[str]],
    counts: dict[str, dict[str, int]],
    trained_stress: int,
) -> list[str]:
    """What a researcher should hear about the labels before training on them."""
    if not counts["energy"]["configs"]:
        return [
            "no energy or forces labels found: configuration 1 holds "
            f"{', '.join(first_names) or 'no values'}; recognised keys are energy, "
            "forces, stress, virial(s) bare or with a REF_/DFT_ prefix (any case), and force. "
            "If the labels are under other names, upload again naming them (energy_key, "
            "forces_key, stress_key, virials_key); unlabelled structures can only be "
            "pseudolabelled (replay)"
        ]
    warnings = []
    for label, found in competing.items():
        warnings.append(
            f"configuration 1 holds {label} under {', '.join(found)}: read "
            f"{found[0]}; upload with {label}_key=... to choose another"
        )
    if counts["forces"]["of"] and not counts["forces"]["configs"]:
        warnings.append(
            "energy only, no forces: the dataset can test and evaluate models, but training "
            "needs forces"
        )
    periodic = counts["stress"]["of"]
    if 0 < trained_stress < periodic:
        warnings.append(
            f"stress or virials on {trained_stress} of {periodic} periodic configurations: the "
            "others train on energy and forces alone"
        )
    return warnings
