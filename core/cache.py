"""Shared work, computed once and reused across a sweep's jobs and later jobs.

Keys are content hashes of everything the result depends on — the foundation file's sha256 and
the configurations' numbers, positions, cells and periodicity — so a changed input is a miss.
"""

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import ase
import numpy as np

logger = logging.getLogger(__name__)


def configurations_digest(configs: Sequence[ase.Atoms]) -> str:
    digest = hashlib.sha256()
    for atoms in configs:
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


class PredictionCache:
    """Foundation predictions on a set of configurations, stored as .npy files in a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def energies(
        self,
        foundation_sha256: str,
        configs: Sequence[ase.Atoms],
        compute: Callable[[], np.ndarray],
    ) -> np.ndarray:
        key = hashlib.sha256(
            f"energies|{foundation_sha256}|{configurations_digest(configs)}".encode()
        ).hexdigest()
        path = self.folder / f"{key}.npy"
        if path.is_file():
            logger.info("cache hit: foundation energies %s", key[:12])
            return np.load(path)
        values = np.asarray(compute(), dtype=np.float64)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Write then rename, so concurrent workers never read half a file.
        partial = path.with_suffix(f".{id(values)}.partial.npy")
        np.save(partial, values)
        partial.replace(path)
        return values
