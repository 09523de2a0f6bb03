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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ase
import ase.io
import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from ase.neighborlist import neighbor_list

from core.errors import InvalidDatasetError

# Label -> accepted keys, first found wins. ASE >= 3.23 moves energy, free_energy, forces and
# stress into a SinglePointCalculator; every other name stays in atoms.info / atoms.arrays.
LABEL_KEYS: dict[str, tuple[str, ...]] = {
    "energy": ("energy", "REF_energy", "DFT_energy", "total_energy", "free_energy"),
    "forces": ("forces", "REF_forces", "DFT_forces"),
    "stress": ("stress", "REF_stress", "DFT_stress"),
    "virials": ("virials", "REF_virials"),
}

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
    # Elements with a single-atom configuration that has an energy: isolated-atom E0 references.
    isolated_atom_elements: list[str]
    sha256: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Labels:
    energy: float | None  # eV
    forces: np.ndarray | None  # (n_atoms, 3), eV/Å
    stress: np.ndarray | None  # 3x3, eV/Å^3, ASE sign convention


def inspect_extxyz(path: Path) -> DatasetSummary:
    """Validate every configuration of an upload and summarise it; raises InvalidDatasetError.

    The file is read frame by frame: memory stays that of one configuration and the running
    summary, whatever the file's size (issue 17: a 200 MB upload used to take 2 GB)."""
    file_keys: dict[str, str] = {}
    summary = _RunningSummary()
    labelled = True
    with path.open("rb") as stream:
        lines = _FileLines(stream)
        for frame in _split_frames(lines):
            atoms = _parse_frame(frame)
            if not summary.n_configs:
                # Structures without any label are a legitimate upload: replay sets that the
                # foundation pseudolabels. Then no configuration may carry labels.
                labelled = _has_labels(atoms)
            problem = _first_problem(atoms, labelled) or _record_keys(atoms, file_keys)
            if problem:
                raise frame.error(problem)
            summary.add(atoms)
        return summary.result(file_keys, lines.digest.hexdigest(), lines.size)


def read_configurations(path: Path) -> list[ase.Atoms]:
    """Parse a file already accepted by inspect_extxyz; labels are read with labels_of."""
    with path.open("rb") as stream:
        return [_parse_frame(frame) for frame in _split_frames(_FileLines(stream))]


def labels_of(atoms: ase.Atoms) -> Labels:
    energy_key = _find_key(atoms, "energy")
    forces_key = _find_key(atoms, "forces")
    return Labels(
        energy=None if energy_key is None else _as_float(_raw(atoms, energy_key)),
        forces=None if forces_key is None else _as_array(_raw(atoms, forces_key)),
        stress=_stress_of(atoms),
    )


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
    if labels.stress is not None:
        copy.info["REF_stress"] = labels.stress
    if labels.forces is not None:
        copy.new_array("REF_forces", labels.forces)
    return copy


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
        return ase.io.read(io.StringIO("\n".join(frame.lines) + "\n"), format="extxyz", index=0)
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


def _first_problem(atoms: ase.Atoms, labelled: bool) -> str | None:
    if not labelled:
        if _has_labels(atoms):
            return (
                "has energy or forces, but configuration 1 has none; label every configuration "
                "or none (unlabelled structures can only be pseudolabelled)"
            )
        checks = _STRUCTURE_CHECKS
    else:
        checks = _CHECKS
    return next((problem for check in checks if (problem := check(atoms))), None)


def _has_labels(atoms: ase.Atoms) -> bool:
    return _find_key(atoms, "energy") is not None or _find_key(atoms, "forces") is not None


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


def _energy_problem(atoms: ase.Atoms) -> str | None:
    key = _find_key(atoms, "energy")
    if key is None:
        return f"no energy (looked for {', '.join(LABEL_KEYS['energy'])})"
    raw = _raw(atoms, key)
    energy = _as_float(raw)
    if energy is None:
        return f"{key} is not a number: {raw!r}"
    if np.isnan(energy):
        return f"{key} is NaN"
    if np.isinf(energy):
        return f"{key} is infinite"
    return None


def _forces_problem(atoms: ase.Atoms) -> str | None:
    key = _find_key(atoms, "forces")
    if key is None:
        if len(atoms) == 1:
            return None  # an isolated atom (an E0 reference) is labelled by its energy alone
        return (
            f"no forces for {len(atoms)} atoms (looked for {', '.join(LABEL_KEYS['forces'])}); "
            "only a single isolated atom may have an energy alone"
        )
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


def _stress_problem(atoms: ase.Atoms) -> str | None:
    for label in ("stress", "virials"):
        key = _find_key(atoms, label)
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
_CHECKS = _STRUCTURE_CHECKS[:3] + (_energy_problem, _forces_problem, _stress_problem) + (
    _overlap_problem,
)


def _record_keys(atoms: ase.Atoms, file_keys: dict[str, str]) -> str | None:
    """Remember the key each label uses; a problem if this configuration uses another one."""
    for label in LABEL_KEYS:
        key = _find_key(atoms, label)
        if key is None:
            continue
        expected = file_keys.setdefault(label, key)
        if key != expected:
            return (
                f"{label} is stored as {key!r}, but earlier configurations use {expected!r}; "
                "use one key throughout the file"
            )
    return None


def _find_key(atoms: ase.Atoms, label: str) -> str | None:
    return next((key for key in LABEL_KEYS[label] if _raw(atoms, key) is not None), None)


def _raw(atoms: ase.Atoms, key: str) -> Any:
    if atoms.calc is not None and key in atoms.calc.results:
        return atoms.calc.results[key]
    if key in atoms.info:
        return atoms.info[key]
    return atoms.arrays.get(key)


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


def _stress_of(atoms: ase.Atoms) -> np.ndarray | None:
    stress_key = _find_key(atoms, "stress")
    if stress_key is not None:
        return _as_matrix(_raw(atoms, stress_key))
    virials_key = _find_key(atoms, "virials")
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
    """What DatasetSummary reports, gathered one configuration at a time."""

    def __init__(self) -> None:
        self.n_configs = 0
        self.n_atoms = 0
        self.element_counts: Counter[int] = Counter()
        self.config_types: Counter[str] = Counter()
        self.n_periodic = 0
        self.isolated_atom_elements: set[str] = set()
        # Per label: some configuration has it / one that needs it lacks it.
        self.some_have = dict.fromkeys(LABEL_KEYS, False)
        self.one_lacks = dict.fromkeys(LABEL_KEYS, False)

    def add(self, atoms: ase.Atoms) -> None:
        self.n_configs += 1
        self.n_atoms += len(atoms)
        self.element_counts.update(atoms.numbers.tolist())
        self.config_types[str(atoms.info.get("config_type", "default"))] += 1
        self.n_periodic += bool(atoms.pbc.any())
        if len(atoms) == 1 and _find_key(atoms, "energy") is not None:
            self.isolated_atom_elements.add(atoms.get_chemical_symbols()[0])
        for label in LABEL_KEYS:
            present = _find_key(atoms, label) is not None
            self.some_have[label] |= present
            self.one_lacks[label] |= not present and _needs(atoms, label)

    def result(self, file_keys: dict[str, str], sha256: str, size_bytes: int) -> DatasetSummary:
        element_counts = {
            chemical_symbols[z]: count for z, count in sorted(self.element_counts.items())
        }
        return DatasetSummary(
            n_configs=self.n_configs,
            n_atoms=self.n_atoms,
            elements=list(element_counts),
            element_counts=element_counts,
            # Some configuration has the label and every one that needs it does.
            labels=[
                label for label in LABEL_KEYS
                if self.some_have[label] and not self.one_lacks[label]
            ],
            energy_key=file_keys.get("energy"),
            forces_key=file_keys.get("forces"),
            stress_key=file_keys.get("stress"),
            config_types=dict(self.config_types),
            n_periodic=self.n_periodic,
            isolated_atom_elements=sorted(
                self.isolated_atom_elements, key=atomic_numbers.__getitem__
            ),
            sha256=sha256,
            size_bytes=size_bytes,
        )


def _needs(atoms: ase.Atoms, label: str) -> bool:
    if label == "energy":
        return True
    if label == "forces":
        return len(atoms) > 1
    return bool(atoms.pbc.any())  # stress and virials only mean something for periodic cells
