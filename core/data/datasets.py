"""Parse, validate and summarise extxyz uploads; write the normalised copy mace-torch reads.

A file is split into frames here, before ASE sees it, so that every problem can be reported as
``configuration k (line L): ...`` with L the line holding the frame's atom count.
"""

import codecs
import hashlib
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import ase
import ase.io
import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from ase.neighborlist import neighbor_list

from core.data.labels import (
    AUTOMATIC,
    LABELS,
    LabelKeys,
    all_label_keys,
    competing_keys,
    find_key,
    raw_value,
    recognised_keys,
    stored_names,
)
from core.errors import InvalidDatasetError

# Closer than this, two atoms are a duplicated or corrupted position, not chemistry; it is also
# the shortest periodic cell vector accepted, since an atom would overlap its own image.
MIN_DISTANCE = 0.1  # Å
# The overlap check on a molecule builds all n^2 distances; above this size it is skipped.
OVERLAP_CHECK_MAX_ATOMS = 500
# A molecule in a 400 Å vacuum box is 6.4e7 Å^3 per atom, beyond any DFT run; more than this
# means a Lattice in the wrong unit (pm) or a placeholder value.
MAX_VOLUME_PER_ATOM = 1e8  # Å^3
# Cell volume over the product of its vector lengths (1 for a cube); below this, it is flat.
MIN_VOLUME_FRACTION = 1e-6

# Files are read line by line; a longer "line" is binary data or a missing line break.
MAX_LINE_BYTES = 1 << 20
# A frame is held in memory whole while it is parsed; bigger ones are not training data for mace.
MAX_ATOMS_PER_CONFIG = 100_000

_MAX_ATOMIC_NUMBER = len(chemical_symbols) - 1
_DEFAULT_PROPERTIES_COLUMNS = 4  # ASE's default "species:S:1:pos:R:3"
_PROPERTIES = re.compile(r"(?:^|\s)Properties=[\"']?([^\s\"']+)")


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
    # Elements with an isolated atom (core.data.datasets.is_isolated_atom) that has an energy: E0
    # references.
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Labels:
    energy: float | None  # eV
    forces: np.ndarray | None  # (n_atoms, 3), eV/Å
    stress: np.ndarray | None  # 3x3, eV/Å^3, ASE sign convention


def inspect_extxyz(path: Path, keys: LabelKeys = AUTOMATIC) -> DatasetSummary:
    """Validate every configuration of an upload and summarise it; raises InvalidDatasetError.

    `keys` are the label keys the upload names; unnamed labels are recognised by their dialect.
    The file is read frame by frame: memory stays that of one configuration and the running
    summary, whatever the file's size (issue 17: a 200 MB upload used to take 2 GB)."""
    file_keys: dict[str, str] = {}
    rules = _LabelRules(keys)
    summary = _RunningSummary(keys)
    with path.open("rb") as stream:
        lines = _FileLines(stream)
        for frame in _split_frames(lines):
            atoms = _parse_frame(frame)
            # Each label's key, looked up once per configuration for every rule and count below.
            found = {label: find_key(atoms, label, keys) for label in LABELS}
            problem = (
                _first_problem(atoms)
                or rules.problem(atoms, found, first=not summary.n_configs)
                or _record_keys(found, file_keys)
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
        return [_parse_frame(frame) for frame in _split_frames(_FileLines(stream))]


def labels_of(atoms: ase.Atoms, keys: LabelKeys = AUTOMATIC) -> Labels:
    energy_key = find_key(atoms, "energy", keys)
    forces_key = find_key(atoms, "forces", keys)
    return Labels(
        energy=None if energy_key is None else _as_float(_raw(atoms, energy_key)),
        forces=None if forces_key is None else _as_array(_raw(atoms, forces_key)),
        stress=_stress_of(atoms, keys),
    )


def is_isolated_atom(atoms: ase.Atoms) -> bool:
    """A single atom in vacuum (an E0 reference): no periodicity, or a config_type that says
    so ("IsolatedAtom", "isolated_atom"). A one-atom periodic cell is a bulk crystal."""
    if len(atoms) != 1:
        return False
    config_type = str(atoms.info.get("config_type", "")).lower().replace("_", "")
    return not atoms.pbc.any() or "isolatedatom" in config_type


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
    return sum(bool(atoms.pbc.any()) and _stress_of(atoms) is not None for atoms in configs)


@dataclass(frozen=True)
class _Frame:
    number: int  # 1-based position in the file
    line: int  # 1-based line of the atom count
    lines: list[str]  # atom count, comment, one line per atom

    def error(self, problem: str) -> InvalidDatasetError:
        return _located(self.number, self.line, problem)


def _located(number: int, line: int, problem: str) -> InvalidDatasetError:
    return InvalidDatasetError(f"configuration {number} (line {line}): {problem}")


class _FileLines:
    """A file's lines as text, read one at a time, hashed and counted on the way."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[str]:
        number = 0
        # A line longer than MAX_LINE_BYTES is read in pieces, and refused at its first piece.
        while raw := self.stream.readline(MAX_LINE_BYTES + 1):
            number += 1
            offset = self.size
            self.digest.update(raw)
            self.size += len(raw)
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                # The byte-order mark some Windows editors write before the atom count.
                raw = raw[len(codecs.BOM_UTF8) :]
                offset += len(codecs.BOM_UTF8)
            text = _decode(raw, offset)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise InvalidDatasetError(
                    f"line {number} is longer than {MAX_LINE_BYTES} bytes; no extxyz line is "
                    "that long: is this an extxyz file?"
                )
            yield text.removesuffix("\n")


def _decode(data: bytes, offset: int = 0) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= MAX_LINE_BYTES - 3 and exc.reason == "unexpected end of data":
            text = data[: exc.start].decode("utf-8")  # a character cut by a piece's end
        else:
            raise InvalidDatasetError(
                f"the file is not text (byte {data[exc.start]:#04x} at offset "
                f"{offset + exc.start} is not UTF-8); upload an uncompressed, plain-text extxyz "
                "file"
            ) from exc
    if "\x00" in text:
        raise InvalidDatasetError(
            "the file is not text (it contains NUL bytes); upload an uncompressed, "
            "plain-text extxyz file"
        )
    return text


def _split_frames(lines: Iterable[str]) -> Iterator[_Frame]:
    """Yield frames one by one, so a miscounted frame is reported before its neighbours."""
    numbered = _without_trailing_blanks(enumerate(lines, start=1))
    number = 0
    for start, line in numbered:
        if not line.strip():
            continue  # ASE stops reading at a blank line between frames; we skip it instead
        number += 1
        n_atoms = _atom_count(line, number, start)
        if n_atoms > MAX_ATOMS_PER_CONFIG:
            raise _located(
                number,
                start,
                f"declares {n_atoms} atoms; at most {MAX_ATOMS_PER_CONFIG} per configuration "
                "are accepted",
            )
        frame = [line]
        for _ in range(n_atoms + 1):
            following = next(numbered, None)
            if following is None:
                raise _located(
                    number,
                    start,
                    f"declares {n_atoms} atoms, but the file ends after "
                    f"{max(len(frame) - 2, 0)} of them (is it truncated?)",
                )
            frame.append(following[1])
        yield _Frame(number, start, frame)
    if number == 0:
        raise InvalidDatasetError("the file is empty")


def _without_trailing_blanks(numbered: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """The numbered lines without the blank ones at the end of the file, which would otherwise
    pass for the missing atoms of a truncated last frame; a run of blank lines is held back (as
    a count, not a list) until a line with text follows it."""
    blank_from, blanks = 0, 0
    for number, line in numbered:
        if not line.strip():
            blank_from, blanks = (blank_from or number), blanks + 1
            continue
        for index in range(blanks):
            yield blank_from + index, ""
        blank_from, blanks = 0, 0
        yield number, line


def _atom_count(line: str, number: int, line_number: int) -> int:
    try:
        n_atoms = int(line)
    except ValueError:
        hint = f"; is the atom count of configuration {number - 1} too small?" if number > 1 else ""
        raise _located(
            number, line_number, f"expected an atom count, found {line.strip()[:60]!r}{hint}"
        ) from None
    if n_atoms < 0:
        raise _located(number, line_number, f"atom count {n_atoms} is negative")
    return n_atoms


def _parse_frame(frame: _Frame) -> ase.Atoms:
    _check_columns(frame)
    try:
        text = io.StringIO("\n".join(frame.lines) + "\n")
        # index=0 reads one frame, one Atoms; ASE's annotation is the same for every index.
        return cast(ase.Atoms, ase.io.read(text, format="extxyz", index=0))
    except KeyError as exc:
        # The only lookup ASE's extxyz reader does by name is symbol -> atomic number.
        raise frame.error(f"unknown chemical symbol {exc.args[0]!r}") from exc
    except Exception as exc:  # ASE reports malformed input with many unrelated exception types
        raise frame.error(f"cannot be parsed: {exc}") from exc


def _check_columns(frame: _Frame) -> None:
    """Catch a wrong atom count by its symptom: an atom line with the wrong number of values."""
    expected = _columns_per_atom(frame.lines[1])
    if expected is None:
        return  # a malformed Properties value; ASE's own error describes it
    n_atoms = len(frame.lines) - 2
    for line_number, line in enumerate(frame.lines[2:], start=frame.line + 2):
        found = len(line.split())
        if found != expected:
            raise frame.error(
                f"line {line_number}: Properties asks for {expected} values per atom, found "
                f"{found}; check that line and that the atom count {n_atoms} is right"
            )


def _columns_per_atom(comment: str) -> int | None:
    match = _PROPERTIES.search(comment)
    if match is None:
        return _DEFAULT_PROPERTIES_COLUMNS
    fields = match.group(1).split(":")  # name:type:count, repeated
    counts = fields[2::3]
    if len(fields) % 3 or not all(count.isdigit() for count in counts):
        return None
    return sum(int(count) for count in counts)


def _first_problem(atoms: ase.Atoms) -> str | None:
    """The first problem of the structure itself; labels are checked by _LabelRules."""
    return next((problem for check in _STRUCTURE_CHECKS if (problem := check(atoms))), None)


class _LabelRules:
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
        raw = _raw(atoms, key)
        energy = _as_float(raw)
        if energy is None:
            return f"{key} is not a number: {raw!r}"
        if np.isnan(energy):
            return f"{key} is NaN"
        if np.isinf(energy):
            return f"{key} is infinite"
        return None

    def _forces_problem(self, atoms: ase.Atoms, found: dict[str, str | None]) -> str | None:
        key = found["forces"]
        if _needs(atoms, "forces") and self.forces is None:
            self.forces = key is not None
        if key is None:
            if not _needs(atoms, "forces") or not self.forces:
                # An isolated atom is labelled by its energy alone; an energy-only set (a
                # dihedral scan) evaluates models, though it cannot train one.
                return None
            return (
                f"no forces for {len(atoms)} atoms (looked for {self._looked_for('forces')}), "
                "but earlier configurations have forces; label forces on every configuration "
                "but isolated atoms, or on none (an energy-only set, for evaluation)"
            )
        if self.forces is False and _needs(atoms, "forces"):
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
            raw = _raw(atoms, key)
            values = _as_array(raw)
            if values is None:
                return f"{key} is not numeric: {raw!r}"
            if values.size not in (6, 9):
                return f"{key} has {values.size} values, expected 6 (Voigt) or 9 (3x3 matrix)"
            if not np.isfinite(values).all():
                return f"{key} is not finite: {values.ravel()}"
        return None


def _element_problem(atoms: ase.Atoms) -> str | None:
    if len(atoms) == 0:
        return "contains no atoms"
    invalid = np.flatnonzero((atoms.numbers < 1) | (atoms.numbers > _MAX_ATOMIC_NUMBER))
    if invalid.size:
        index = invalid[0]
        return f"atom {index + 1} is not a chemical element (atomic number {atoms.numbers[index]})"
    return None


def _position_problem(atoms: ase.Atoms) -> str | None:
    invalid = np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))
    if invalid.size:
        return f"position of atom {invalid[0] + 1} is not finite: {atoms.positions[invalid[0]]}"
    return None


def _cell_problem(atoms: ase.Atoms) -> str | None:
    # mace replaces the cell along non-periodic directions, so only periodic ones must make sense.
    if not atoms.pbc.any():
        return None
    if not np.isfinite(atoms.cell.array).all():
        return "cell is not finite"
    lengths = atoms.cell.lengths()
    for axis in np.flatnonzero(atoms.pbc):
        if lengths[axis] < MIN_DISTANCE:
            return (
                f"cell vector {'abc'[axis]} is {lengths[axis]:.3g} Å long, but pbc is True along "
                "it; give a Lattice or set pbc False for that direction"
            )
    if not atoms.pbc.all():
        return None
    volume = atoms.cell.volume
    if volume < MIN_VOLUME_FRACTION * np.prod(lengths):
        return f"cell vectors are coplanar (volume {volume:.3g} Å^3) but pbc is True"
    if volume / len(atoms) > MAX_VOLUME_PER_ATOM:
        return (
            f"cell volume is {volume / len(atoms):.3g} Å^3 per atom, above "
            f"{MAX_VOLUME_PER_ATOM:.0e}; is the Lattice in Å?"
        )
    return None


def _forces_value_problem(atoms: ase.Atoms, key: str) -> str | None:
    forces = _as_array(_raw(atoms, key))
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


def _overlap_problem(atoms: ase.Atoms) -> str | None:
    if not 2 <= len(atoms) <= OVERLAP_CHECK_MAX_ATOMS:
        return None
    pair = _overlapping_pair(atoms)
    if pair is None:
        return None
    first, second, distance = pair
    return f"atoms {first + 1} and {second + 1} are {distance:.3g} Å apart"


def _overlapping_pair(atoms: ase.Atoms) -> tuple[int, int, float] | None:
    """The closest pair nearer than MIN_DISTANCE, across periodic boundaries where pbc is True."""
    if atoms.pbc.any():
        # ASE's default binning scales with cell volume / cutoff^3, slow for vacuum boxes.
        first, second, distance = neighbor_list("ijd", atoms, MIN_DISTANCE, max_nbins=len(atoms))
    else:
        positions = atoms.positions
        first, second = np.triu_indices(len(atoms), k=1)
        distance = np.linalg.norm(positions[first] - positions[second], axis=1)
    if not distance.size or distance.min() >= MIN_DISTANCE:
        return None
    closest = int(np.argmin(distance))
    low, high = sorted((int(first[closest]), int(second[closest])))
    return low, high, float(distance[closest])


_STRUCTURE_CHECKS: tuple[Callable[[ase.Atoms], str | None], ...] = (
    _element_problem,
    _position_problem,
    _cell_problem,
    _overlap_problem,
)


def _record_keys(found: dict[str, str | None], file_keys: dict[str, str]) -> str | None:
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


def _raw(atoms: ase.Atoms, key: str) -> Any:
    return raw_value(atoms, key)


def _as_float(value: Any) -> float | None:
    """None unless value is one number; ASE keeps unparsable values as strings or booleans."""
    array = np.asarray(value)
    if array.shape != () or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array)


def _as_array(value: Any) -> np.ndarray | None:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number):
        return None
    return array.astype(float)


def _stress_of(atoms: ase.Atoms, keys: LabelKeys = AUTOMATIC) -> np.ndarray | None:
    stress_key = find_key(atoms, "stress", keys)
    if stress_key is not None:
        return _as_matrix(_raw(atoms, stress_key))
    virials_key = find_key(atoms, "virials", keys)
    volume = atoms.cell.volume
    if virials_key is None or volume <= 0:
        return None
    # mace's convention (modules/utils.py): stress = -virials / volume.
    return -_as_matrix(_raw(atoms, virials_key)) / volume


def _as_matrix(values: Any) -> np.ndarray:
    flat = np.asarray(values, dtype=float).ravel()
    if flat.size == 9:
        return flat.reshape(3, 3)
    xx, yy, zz, yz, xz, xy = flat  # Voigt order, as ASE and mace write it
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


class _RunningSummary:
    """What DatasetSummary reports, gathered one configuration at a time (no list of them)."""

    def __init__(self, keys: LabelKeys) -> None:
        self.keys = keys
        self.n_configs = 0
        self.n_atoms = 0
        self.element_counts: Counter[int] = Counter()
        self.config_types: Counter[str] = Counter()
        self.n_periodic = 0
        self.isolated_atom_elements: set[str] = set()
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
        for label in LABELS:
            if _needs(atoms, label):
                self.applicable[label] += 1
                self.present[label] += found[label] is not None
        # What _stress_of reads: stress, or virials over a cell with a volume.
        has_stress = found["stress"] is not None or (
            found["virials"] is not None and atoms.cell.volume > 0
        )
        if _needs(atoms, "stress") and has_stress:
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


def _needs(atoms: ase.Atoms, label: str) -> bool:
    if label == "energy":
        return True
    if label == "forces":
        return not is_isolated_atom(atoms)
    return bool(atoms.pbc.any())  # stress and virials only mean something for periodic cells
