"""Parse, validate and summarise extxyz uploads; write the normalised copy mace-torch reads.

A file is split into frames here, before ASE sees it, so that every problem can be reported as
``configuration k (line L): ...`` with L the line holding the frame's atom count.
"""

import hashlib
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    """Validate every configuration of an upload and summarise it; raises InvalidDatasetError."""
    data = path.read_bytes()
    file_keys: dict[str, str] = {}
    configs: list[ase.Atoms] = []
    labelled = True
    for frame in _split_frames(_decode(data)):
        atoms = _parse_frame(frame)
        if not configs:
            # Structures without any label are a legitimate upload: replay sets that the
            # foundation pseudolabels. Then no configuration may carry labels.
            labelled = _has_labels(atoms)
        problem = _first_problem(atoms, labelled) or _record_keys(atoms, file_keys)
        if problem:
            raise frame.error(problem)
        configs.append(atoms)
    return _summarise(configs, file_keys, data)


def read_configurations(path: Path) -> list[ase.Atoms]:
    """Parse a file already accepted by inspect_extxyz; labels are read with labels_of."""
    return [_parse_frame(frame) for frame in _split_frames(_decode(path.read_bytes()))]


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


def _decode(data: bytes) -> str:
    if not data.strip():
        raise InvalidDatasetError("the file is empty")
    try:
        # utf-8-sig drops the byte-order mark some Windows editors write before the atom count.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidDatasetError(
            f"the file is not text (byte {data[exc.start]:#04x} at offset {exc.start} is not "
            "UTF-8); upload an uncompressed, plain-text extxyz file"
        ) from exc
    if "\x00" in text:
        raise InvalidDatasetError(
            "the file is not text (it contains NUL bytes); upload an uncompressed, "
            "plain-text extxyz file"
        )
    return text


def _split_frames(text: str) -> Iterator[_Frame]:
    """Yield frames one by one, so a miscounted frame is reported before its neighbours."""
    # Trailing blank lines would otherwise pass for the missing atoms of a truncated last frame.
    lines = text.rstrip().split("\n")
    start = 0
    number = 0
    while start < len(lines):
        if not lines[start].strip():
            start += 1  # ASE stops reading at a blank line between frames; we skip it instead
            continue
        number += 1
        n_atoms = _atom_count(lines[start], number, start + 1)
        end = start + 2 + n_atoms
        if end > len(lines):
            found = max(len(lines) - start - 2, 0)
            raise _located(
                number,
                start + 1,
                f"declares {n_atoms} atoms, but the file ends after {found} of them "
                "(is it truncated?)",
            )
        yield _Frame(number, start + 1, lines[start:end])
        start = end


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


def _summarise(configs: list[ase.Atoms], file_keys: dict[str, str], data: bytes) -> DatasetSummary:
    all_numbers = np.concatenate([atoms.numbers for atoms in configs])
    numbers, counts = np.unique(all_numbers, return_counts=True)
    element_counts = {
        chemical_symbols[z]: int(count) for z, count in zip(numbers, counts, strict=True)
    }
    config_types = Counter(str(atoms.info.get("config_type", "default")) for atoms in configs)
    return DatasetSummary(
        n_configs=len(configs),
        n_atoms=sum(len(atoms) for atoms in configs),
        elements=list(element_counts),
        element_counts=element_counts,
        labels=[label for label in LABEL_KEYS if _covers(configs, label)],
        energy_key=file_keys.get("energy"),
        forces_key=file_keys.get("forces"),
        stress_key=file_keys.get("stress"),
        config_types=dict(config_types),
        n_periodic=sum(bool(atoms.pbc.any()) for atoms in configs),
        isolated_atom_elements=sorted(
            {
                atoms.get_chemical_symbols()[0]
                for atoms in configs
                if len(atoms) == 1 and _find_key(atoms, "energy") is not None
            },
            key=atomic_numbers.__getitem__,
        ),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def _covers(configs: list[ase.Atoms], label: str) -> bool:
    """Whether some configuration has the label and every one that needs it does."""
    has = [_find_key(atoms, label) is not None for atoms in configs]
    return any(has) and all(
        present for atoms, present in zip(configs, has, strict=True) if _needs(atoms, label)
    )


def _needs(atoms: ase.Atoms, label: str) -> bool:
    if label == "energy":
        return True
    if label == "forces":
        return len(atoms) > 1
    return bool(atoms.pbc.any())  # stress and virials only mean something for periodic cells
