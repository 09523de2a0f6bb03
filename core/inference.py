"""Model predictions in batches: many configurations per forward pass, in float64.

mace-torch's own estimator runs one configuration at a time; batching through mace's own graph
construction gives the same numbers much faster.
"""

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import ase
import numpy as np
import torch
from mace.data import AtomicData, config_from_atoms
from mace.data.neighborhood import get_neighborhood
from mace.tools import AtomicNumberTable, torch_geometric


@dataclass(frozen=True)
class Prediction:
    energy: float
    forces: np.ndarray | None
    # 3x3, eV/Å^3, ASE's sign convention; only for fully periodic cells when stress was asked.
    stress: np.ndarray | None = None


def predict(
    model: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    *,
    batch_size: int = 32,
    device: str = "cpu",
    forces: bool = True,
    stress: bool = False,
) -> list[Prediction]:
    """Energy (eV) and, when asked, forces (eV/Å) and stress of each configuration, in order
    (head 0)."""
    inference = _inference_model(model, device)
    predictions: list[Prediction] = []
    for graph in model_inputs(model, configs, batch_size, device):
        # Forces and stress are gradients of the energy, so autograd stays on when wanted.
        with torch.set_grad_enabled(forces or stress):
            output = inference(graph, training=False, compute_force=forces, compute_stress=stress)
        energies = output["energy"].detach().cpu().numpy().astype(np.float64)
        all_forces = output["forces"].detach().cpu().numpy() if forces else None
        all_stress = output["stress"].detach().cpu().numpy() if stress else None
        bounds = graph["ptr"].cpu().numpy()
        first = len(predictions)
        for index, energy in enumerate(energies):
            atom_forces = (
                None if all_forces is None else all_forces[bounds[index] : bounds[index + 1]]
            )
            # mace returns zeros for cells without volume; a stress only means something when
            # the cell is periodic in every direction.
            cell_stress = (
                all_stress[index]
                if all_stress is not None and configs[first + index].pbc.all()
                else None
            )
            predictions.append(Prediction(float(energy), atom_forces, cell_stress))
    return predictions


def model_inputs(
    model: torch.nn.Module, configs: Sequence[ase.Atoms], batch_size: int, device: str = "cpu"
) -> Iterator[dict[str, torch.Tensor]]:
    """Batched graphs as mace's model reads them, built with mace's own neighbour list.

    mace's AtomicData makes some thirty tensors per configuration (labels, weights) that a
    prediction never reads, and collating them costs more than the model on small systems; this
    makes only what the forward pass reads, once per batch, from the same edges and shifts.
    """
    zs = [int(z) for z in model.atomic_numbers]
    index_of = np.full(max(zs) + 1, -1)
    index_of[zs] = np.arange(len(zs))
    cutoff = float(model.r_max)
    for start in range(0, len(configs), batch_size):
        chunk = configs[start : start + batch_size]
        positions, species, edges, shifts, unit_shifts, cells = [], [], [], [], [], []
        offset = 0
        for atoms in chunk:
            unknown = set(atoms.numbers.tolist()) - set(zs)
            if unknown:
                raise ValueError(f"the model has no element with atomic number {min(unknown)}")
            # As mace's config_from_atoms and AtomicData.from_config pass them.
            edge_index, shift, unit_shift, cell = get_neighborhood(
                positions=atoms.get_positions(),
                cutoff=cutoff,
                pbc=tuple(atoms.get_pbc().tolist()),
                cell=np.array(atoms.get_cell()),
            )
            positions.append(atoms.get_positions())
            species.append(index_of[atoms.numbers])
            edges.append(edge_index + offset)
            shifts.append(shift)
            unit_shifts.append(unit_shift)
            cells.append(cell)
            offset += len(atoms)
        counts = np.array([len(atoms) for atoms in chunk])

        def tensor(array: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

        yield {
            "positions": tensor(np.concatenate(positions)),
            "node_attrs": tensor(np.eye(len(zs))[np.concatenate(species)]),
            "edge_index": tensor(np.concatenate(edges, axis=1), torch.long),
            "shifts": tensor(np.concatenate(shifts).reshape(-1, 3)),
            "unit_shifts": tensor(np.concatenate(unit_shifts).reshape(-1, 3)),
            "cell": tensor(np.concatenate(cells)),
            "batch": tensor(np.repeat(np.arange(len(chunk)), counts), torch.long),
            "ptr": tensor(np.concatenate([[0], np.cumsum(counts)]), torch.long),
            "head": torch.zeros(len(chunk), dtype=torch.long, device=device),
        }


def _inference_model(model: torch.nn.Module, device: str) -> torch.nn.Module:
    # Predictions run in float64 and eval mode; convert a copy so the caller's model keeps its
    # dtype, device and mode (a deep copy of a MACE costs a TorchScript round trip, so skip it
    # when nothing needs converting).
    tensors = [*model.parameters(), *model.buffers()]
    ready = all(t.device == torch.device(device) for t in tensors) and all(
        t.dtype == torch.float64 for t in tensors if t.is_floating_point()
    )
    if ready and not model.training:
        return model
    return copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()


def _batches(
    model: torch.nn.Module, configs: Sequence[ase.Atoms], batch_size: int
) -> torch_geometric.dataloader.DataLoader:
    # The same graph construction mace uses when it estimates E0s itself (data.utils.
    # estimate_e0s_from_foundation): the model's own element table and cutoff.
    z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
    cutoff = float(model.r_max)
    with _default_dtype(torch.float64):
        dataset = [
            AtomicData.from_config(config_from_atoms(atoms), z_table=z_table, cutoff=cutoff)
            for atoms in configs
        ]
    return torch_geometric.dataloader.DataLoader(
        dataset=dataset, batch_size=batch_size, shuffle=False, drop_last=False
    )


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    # AtomicData.from_config builds positions and shifts in torch's default dtype; float32 would
    # round positions before the float64 model sees them. Restored on exit, even on error.
    previous = torch.get_default_dtype()
    if previous == dtype:
        yield
        return
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


