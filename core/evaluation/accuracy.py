"""Pointwise accuracy of a model on a dataset: energy and force errors in the units people read."""

from dataclasses import asdict, dataclass

import ase
import numpy as np
import torch

from core.datasets import labels_of
from core.inference import predict


@dataclass(frozen=True)
class AccuracyMetrics:
    n_configs: int
    energy_rmse_mev_per_atom: float
    energy_mae_mev_per_atom: float
    forces_rmse_mev_per_a: float | None
    forces_mae_mev_per_a: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def accuracy(
    model: torch.nn.Module, configs: list[ase.Atoms], *, batch_size: int = 32, device: str = "cpu"
) -> AccuracyMetrics:
    predictions = predict(model, configs, batch_size=batch_size, device=device)
    energy_errors = []
    force_errors = []
    for atoms, prediction in zip(configs, predictions, strict=True):
        labels = labels_of(atoms)
        if labels.energy is not None:
            energy_errors.append((prediction.energy - labels.energy) / len(atoms))
        if labels.forces is not None and prediction.forces is not None:
            force_errors.append((prediction.forces - labels.forces).ravel())
    energy = np.asarray(energy_errors) * 1e3
    forces = np.concatenate(force_errors) * 1e3 if force_errors else None
    return AccuracyMetrics(
        n_configs=len(configs),
        energy_rmse_mev_per_atom=_rmse(energy),
        energy_mae_mev_per_atom=float(np.mean(np.abs(energy))),
        forces_rmse_mev_per_a=_rmse(forces) if forces is not None else None,
        forces_mae_mev_per_a=float(np.mean(np.abs(forces))) if forces is not None else None,
    )


def _rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(errors**2)))
