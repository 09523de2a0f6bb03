"""Relaxed structures kept on disk per (model file, starting structures, relaxation settings)."""

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ase

from core.artifacts.atomic_files import write_atomically
from core.evaluation.relaxation import Relaxed, RelaxSettings

logger = logging.getLogger(__name__)

# Bumped whenever relaxation changes, so cached results of an older procedure are not reused.
PROCEDURE_VERSION = "rss-1"


class RelaxationCache:
    """Relaxed structures per (model file, starting structures, relaxation settings): the
    foundation's are computed once and reused by every job and evaluation compared with it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def key(self, model_sha256: str, structure_set: str, settings: RelaxSettings) -> str:
        text = json.dumps([PROCEDURE_VERSION, model_sha256, structure_set, asdict(settings)])
        return hashlib.sha256(text.encode()).hexdigest()

    def load(self, key: str) -> list[Relaxed] | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        logger.info("cache hit: rss relaxations %s", key[:12])
        return [_relaxed_from_dict(entry) for entry in json.loads(path.read_text())]

    def store(self, key: str, relaxed: Sequence[Relaxed]) -> None:
        text = json.dumps([_relaxed_to_dict(r) for r in relaxed])
        write_atomically(self.folder / f"{key}.json", lambda partial: partial.write_text(text))


def _relaxed_to_dict(relaxed: Relaxed) -> dict[str, Any]:
    values = {k: v for k, v in relaxed.__dict__.items() if k != "atoms"}
    atoms = relaxed.atoms
    if atoms is not None:
        values["atoms"] = {
            "numbers": atoms.numbers.tolist(),
            "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(),
        }
    return values


def _relaxed_from_dict(values: dict[str, Any]) -> Relaxed:
    stored = values.pop("atoms", None)
    atoms = None if stored is None else ase.Atoms(**stored, pbc=True)
    return Relaxed(**values, atoms=atoms)
