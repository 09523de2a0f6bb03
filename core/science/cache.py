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

from core.artifacts.atomic_files import write_atomically
from core.artifacts.storage import Storage
from core.artifacts.storage_keys import prediction_key
from core.errors import ArtifactMissingError
from core.science.inference import Prediction

logger = logging.getLogger(__name__)


def configurations_digest(configs: Sequence[ase.Atoms]) -> str:
    digest = hashlib.sha256()
    for atoms in configs:
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


class PredictionCache:
    """Foundation predictions on a set of configurations, stored as .npy/.npz files in a folder
    and, given a storage, shared through it: what the API computed at submission, or one worker
    for a sweep, serves every worker on every machine."""

    def __init__(self, folder: Path, storage: Storage | None = None) -> None:
        self.folder = folder
        self.storage = storage

    def labels(
        self,
        foundation_sha256: str,
        configs: Sequence[ase.Atoms],
        compute: Callable[[], list[Prediction]],
    ) -> list[Prediction]:
        """Energy, forces and (periodic cells) stress of each configuration: pseudolabels."""
        path = self._path("labels", foundation_sha256, configs, ".npz")
        if self._held(path):
            logger.info("cache hit: foundation labels %s", path.stem[:12])
            return _unpack_predictions(np.load(path), configs)
        predictions = compute()
        write_atomically(
            path,
            # numpy's stub cannot tell these array names from its own `allow_pickle` keyword.
            lambda partial: np.savez(partial, **_pack_predictions(predictions)),  # type: ignore[arg-type]
        )
        self._share(path)
        return predictions

    def energies(
        self,
        foundation_sha256: str,
        configs: Sequence[ase.Atoms],
        compute: Callable[[], np.ndarray],
    ) -> np.ndarray:
        path = self._path("energies", foundation_sha256, configs, ".npy")
        if self._held(path):
            logger.info("cache hit: foundation energies %s", path.stem[:12])
            return np.load(path)
        values = np.asarray(compute(), dtype=np.float64)
        write_atomically(path, lambda partial: np.save(partial, values))
        self._share(path)
        return values

    def _held(self, path: Path) -> bool:
        """In the folder, or fetched into it from storage (another process computed it)."""
        if path.is_file():
            return True
        storage, key = self.storage, prediction_key(path.name)
        if storage is None or not storage.exists(key):
            return False
        try:
            write_atomically(path, lambda partial: storage.fetch(key, partial))
        except ArtifactMissingError:  # removed meanwhile: computed again
            return False
        return True

    def _share(self, path: Path) -> None:
        if self.storage is not None:
            self.storage.put_file(prediction_key(path.name), path)

    def _path(
        self, kind: str, foundation_sha256: str, configs: Sequence[ase.Atoms], suffix: str
    ) -> Path:
        key = hashlib.sha256(
            f"{kind}|{foundation_sha256}|{configurations_digest(configs)}".encode()
        ).hexdigest()
        return self.folder / f"{key}{suffix}"


def _pack_predictions(predictions: Sequence[Prediction]) -> dict[str, np.ndarray]:
    # Forces of all configurations in one array; NaN stress where a cell has none.
    return {
        "energy": np.array([p.energy for p in predictions], dtype=np.float64),
        "forces": np.concatenate([np.asarray(p.forces).reshape(-1, 3) for p in predictions]),
        "stress": np.array(
            [np.full((3, 3), np.nan) if p.stress is None else p.stress for p in predictions]
        ),
    }


def _unpack_predictions(stored, configs: Sequence[ase.Atoms]) -> list[Prediction]:
    bounds = np.cumsum([0, *(len(atoms) for atoms in configs)])
    predictions = []
    for index, energy in enumerate(stored["energy"]):
        stress = stored["stress"][index]
        predictions.append(
            Prediction(
                float(energy),
                stored["forces"][bounds[index] : bounds[index + 1]],
                None if np.isnan(stress).all() else stress,
            )
        )
    return predictions
