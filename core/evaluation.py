"""Model predictions in batches and the pointwise accuracy metrics of a model on a dataset."""

from dataclasses import asdict, dataclass

import ase
import numpy as np
import torch
from mace.data import AtomicData, config_from_atoms
from mace.tools import torch_geometric
from mace.tools.utils import AtomicNumberTable

from core.datasets import labels_of


@dataclass(frozen=True)
class Prediction:
    energy: float
    forces: np.ndarray | None


def predict(
    model: torch.nn.Module,
    configs: list[ase.Atoms],
    *,
    batch_size: int = 32,
    device: str = "cpu",
    compute_forces: bool = True,
) -> list[Prediction]:
    """Energies (and forces) of every configuration, many configurations per forward pass."""
    model = model.to(device).eval()
    z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
    cutoff = float(model.r_max)
    data = [
        AtomicData.from_config(config_from_atoms(atoms), z_table=z_table, cutoff=cutoff)
        for atoms in configs
    ]
    loader = torch_geometric.dataloader.DataLoader(data, batch_size=batch_size, shuffle=False)
    predictions: list[Prediction] = []
    for batch in loader:
        batch = batch.to(device)
        # Forces are gradients, so autograd must stay on even when evaluating.
        with torch.set_grad_enabled(compute_forces):
            output = model(batch.to_dict(), training=False, compute_force=compute_forces)
        energies = output["energy"].detach().cpu().numpy()
        forces = output["forces"].detach().cpu().numpy() if compute_forces else None
        offsets = batch.ptr.cpu().numpy()
        for index, energy in enumerate(energies):
            atom_forces = None if forces is None else forces[offsets[index] : offsets[index + 1]]
            predictions.append(Prediction(float(energy), atom_forces))
    return predictions


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
