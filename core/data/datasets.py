"""Read, validate and summarise extxyz uploads; write the normalised copy every reader takes and
the files mace-torch trains on.

The pieces, one module each: the file split into frames (extxyz_frames), checks of the
structure (structure_checks) and of its labels (label_rules), the labels as numbers
(label_values) and the summary (dataset_summary).
"""

from pathlib import Path

import ase
import ase.io

from core.data.dataset_summary import DatasetSummary, RunningSummary
from core.data.extxyz_frames import FileLines, parse_frame, split_frames
from core.data.label_rules import LabelRules, record_keys
from core.data.label_values import labels_of, stress_of
from core.data.labels import AUTOMATIC, LABELS, LabelKeys, all_label_keys, find_key
from core.data.structure_checks import structure_problem
from core.errors import InvalidDatasetError


def inspect_extxyz(path: Path, keys: LabelKeys = AUTOMATIC) -> DatasetSummary:
    """Validate every configuration of an upload and summarise it; raises InvalidDatasetError.

    `keys` are the label keys the upload names; unnamed labels are recognised by their dialect.
    The file is read frame by frame: memory stays that of one configuration and the running
    summary, whatever the file's size (issue 17: a 200 MB upload used to take 2 GB)."""
    file_keys: dict[str, str] = {}
    rules = LabelRules(keys)
    summary = RunningSummary(keys)
    with path.open("rb") as stream:
        lines = FileLines(stream)
        for frame in split_frames(lines):
            atoms = parse_frame(frame)
            # Each label's key, looked up once per configuration for every rule and count below.
            found = {label: find_key(atoms, label, keys) for label in LABELS}
            problem = (
                structure_problem(atoms)
                or rules.problem(atoms, found, first=not summary.n_configs)
                or record_keys(found, file_keys)
            )
            if problem:
                raise frame.error(problem)
            summary.add(atoms, found)
        unfound = summary.unfound_named_key()
        if unfound:
            raise InvalidDatasetError(unfound)
        return summary.result(file_keys, lines.digest.hexdigest(), lines.size)


def read_configurations(path: Path) -> list[ase.Atoms]:
    """Parse a file already accepted by inspect_extxyz; labels are read with labels_of."""
    with path.open("rb") as stream:
        return [parse_frame(frame) for frame in split_frames(FileLines(stream))]


def write_normalised(source: Path, dest: Path, keys: LabelKeys) -> Path:
    """Copy a dataset with its labels under the keys every reader recognises first (REF_energy,
    REF_forces, REF_stress), so a file uploaded with named keys reads the same everywhere."""
    configs = [_with_canonical_labels(atoms, keys) for atoms in read_configurations(source)]
    ase.io.write(dest, configs, format="extxyz")
    return dest


def _with_canonical_labels(atoms: ase.Atoms, keys: LabelKeys) -> ase.Atoms:
    labels = labels_of(atoms, keys)
    copy = ase.Atoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
    dropped = all_label_keys() | {name.lower() for name in keys.to_dict().values()}
    for name, value in atoms.info.items():
        if name.lower() not in dropped:
            copy.info[name] = value
    for name, value in atoms.arrays.items():
        if name.lower() not in dropped and name not in ("numbers", "positions"):
            copy.new_array(name, value)
    if labels.energy is not None:
        copy.info["REF_energy"] = labels.energy
    if labels.stress is not None:
        copy.info["REF_stress"] = labels.stress.ravel()
    if labels.forces is not None:
        copy.new_array("REF_forces", labels.forces)
    return copy


def write_mace_extxyz(configs: list[ase.Atoms], dest: Path) -> None:
    """Write configs with REF_energy / REF_forces / REF_stress only, so mace reads exactly these."""
    ase.io.write(dest, [_for_mace(atoms) for atoms in configs], format="extxyz")


def _for_mace(atoms: ase.Atoms) -> ase.Atoms:
    labels = labels_of(atoms)
    copy = ase.Atoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
    if "config_type" in atoms.info:
        # mace concatenates config_type with strings when it reports per-type errors.
        copy.info["config_type"] = str(atoms.info["config_type"])
    if labels.energy is not None:
        copy.info["REF_energy"] = labels.energy
    if labels.stress is not None and atoms.pbc.any():
        # A cell without periodicity has no volume for mace's stress: the label is not trained.
        copy.info["REF_stress"] = labels.stress
    if labels.forces is not None:
        copy.new_array("REF_forces", labels.forces)
    return copy


def trained_stress_count(configs: list[ase.Atoms]) -> int:
    """Configurations whose stress write_mace_extxyz hands to mace (periodic, with stress or
    virials)."""
    return sum(bool(atoms.pbc.any()) and stress_of(atoms) is not None for atoms in configs)
