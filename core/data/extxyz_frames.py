"""An extxyz file split into frames before ASE sees it, one frame in memory at a time, so that
every problem can be reported as ``configuration k (line L): ...`` with L the line holding the
frame's atom count."""

import codecs
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

import ase
import ase.io

from core.errors import InvalidDatasetError

# Files are read line by line; a longer "line" is binary data or a missing line break.
MAX_LINE_BYTES = 1 << 20
# A frame is held in memory whole while it is parsed; bigger ones are not training data for mace.
MAX_ATOMS_PER_CONFIG = 100_000

_DEFAULT_PROPERTIES_COLUMNS = 4  # ASE's default "species:S:1:pos:R:3"
_PROPERTIES = re.compile(r"(?:^|\s)Properties=[\"']?([^\s\"']+)")


@dataclass(frozen=True)
class Frame:
    number: int  # 1-based position in the file
    line: int  # 1-based line of the atom count
    lines: list[str]  # atom count, comment, one line per atom

    def error(self, problem: str) -> InvalidDatasetError:
        return _located(self.number, self.line, problem)


def _located(number: int, line: int, problem: str) -> InvalidDatasetError:
    return InvalidDatasetError(f"configuration {number} (line {line}): {problem}")


class FileLines:
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


def split_frames(lines: Iterable[str]) -> Iterator[Frame]:
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
        yield Frame(number, start, frame)
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


def parse_frame(frame: Frame) -> ase.Atoms:
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


def _check_columns(frame: Frame) -> None:
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
