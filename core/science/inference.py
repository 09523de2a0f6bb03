"""Model predictions in batches: many configurations per forward pass, in float64.

mace-torch's own estimator runs one configuration at a time; batching through mace's own graph
construction gives the same numbers much faster. Batches are bounded by edges (neighbour pairs
within r_max), which is what a MACE's memory grows with: 24 copper cells of 108 atoms at r_max 6 Å
are 200k edges, several GB of activations at MACE-MP-0 size in one pass.
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

from core.config import get_settings
from core.registry import mace_model
from core.science.cueq import inference_model


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
    batch_size: int | None = None,
    max_edges: int | None = None,
    device: str = "cpu",
    forces: bool = True,
    stress: bool = False,
    neighbourhoods: Sequence["Neighbourhood"] | None = None,
) -> list[Prediction]:
    """Energy (eV) and, when asked, forces (eV/Å) and stress of each configuration, in order
    (head 0). Batches hold at most `max_edges` edges (MLFT_MAX_EDGES_PER_BATCH by default) and,
    when given, `batch_size` configurations; `neighbourhoods` (of these configurations, at the
    model's r_max) are reused instead of built again."""
    inference = _inference_model(model, device)
    predictions: list[Prediction] = []
    inputs = model_inputs(
        model, configs, batch_size, device, max_edges=max_edges, neighbourhoods=neighbourhoods
    )
    for graph in inputs:
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
        del output, graph  # the next batch's graph is built before this one would be freed
    return predictions


@dataclass(frozen=True)
class Neighbourhood:
    """One configuration's graph inputs from mace's own neighbour list."""

    edge_index: np.ndarray  # 2 x edges
    shifts: np.ndarray
    unit_shifts: np.ndarray
    cell: np.ndarray

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])


def neighbourhood(atoms: ase.Atoms, cutoff: float) -> Neighbourhood:
    # As mace's config_from_atoms and AtomicData.from_config pass them.
    edge_index, shift, unit_shift, cell = get_neighborhood(
        positions=atoms.get_positions(),
        cutoff=cutoff,
        pbc=tuple(atoms.get_pbc().tolist()),
        cell=np.array(atoms.get_cell()),
    )
    return Neighbourhood(edge_index, shift, unit_shift, cell)


# The running job's budget (core.science.edge_budget), set when the job starts: every pass of
# the job, however deep in the evaluation, is bounded by it. A worker process runs one job at a
# time (Celery's solo or prefork pool), so one value per process is the job's.
_job_edge_budget: int | None = None


def use_edge_budget(edges: int | None) -> None:
    """Bound this process's passes by `edges` (None: back to MLFT_MAX_EDGES_PER_BATCH)."""
    global _job_edge_budget
    _job_edge_budget = edges


def edge_budget(max_edges: int | None = None) -> int:
    if max_edges is not None:
        return max_edges
    return _job_edge_budget or get_settings().max_edges_per_batch


def batch_by_edges(
    edge_counts: Sequence[int], max_edges: int, max_configs: int | None = None
) -> list[range]:
    """Consecutive index ranges whose edges (plus one per configuration, so that lone atoms
    count) stay within `max_edges`; a configuration larger than the budget forms its own."""
    batches: list[range] = []
    start, total = 0, 0
    for index, edges in enumerate(edge_counts):
        cost = edges + 1
        full = max_configs is not None and index - start >= max_configs
        if index > start and (total + cost > max_edges or full):
            batches.append(range(start, index))
            start, total = index, 0
        total += cost
    if start < len(edge_counts):
        batches.append(range(start, len(edge_counts)))
    return batches


def model_inputs(
    model: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    batch_size: int | None = None,
    device: str = "cpu",
    *,
    max_edges: int | None = None,
    neighbourhoods: Sequence["Neighbourhood"] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batched graphs as mace's model reads them, built with mace's own neighbour list, at most
    `max_edges` edges per batch (memory grows with edges, not with configurations).

    mace's AtomicData makes some thirty tensors per configuration (labels, weights) that a
    prediction never reads, and collating them costs more than the model on small systems; this
    makes only what the forward pass reads, once per batch, from the same edges and shifts.
    """
    zs = mace_model.atomic_numbers(model)
    cutoff = mace_model.cutoff(model)
    for atoms in configs:
        unknown = set(atoms.numbers.tolist()) - set(zs)
        if unknown:
            raise ValueError(f"the model has no element with atomic number {min(unknown)}")
    # Neighbour lists are small next to the model's activations, so all are built first: the
    # batches then follow from their edge counts.
    graphs = neighbourhoods or [neighbourhood(atoms, cutoff) for atoms in configs]
    for chunk in batch_by_edges([g.n_edges for g in graphs], edge_budget(max_edges), batch_size):
        yield collate(zs, [configs[i] for i in chunk], [graphs[i] for i in chunk], device)


def collate(
    zs: Sequence[int],
    chunk: Sequence[ase.Atoms],
    graphs: Sequence[Neighbourhood],
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """One batch in the dictionary form mace's forward pass reads."""
    index_of = np.full(max(zs) + 1, -1)
    index_of[list(zs)] = np.arange(len(zs))
    counts = np.array([len(atoms) for atoms in chunk])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def tensor(array: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

    return {
        "positions": tensor(np.concatenate([atoms.get_positions() for atoms in chunk])),
        "node_attrs": tensor(
            np.eye(len(zs))[np.concatenate([index_of[atoms.numbers] for atoms in chunk])]
        ),
        "edge_index": tensor(
            np.concatenate([g.edge_index + o for g, o in zip(graphs, offsets, strict=True)], 1),
            torch.long,
        ),
        "shifts": tensor(np.concatenate([g.shifts for g in graphs]).reshape(-1, 3)),
        "unit_shifts": tensor(np.concatenate([g.unit_shifts for g in graphs]).reshape(-1, 3)),
        "cell": tensor(np.concatenate([g.cell for g in graphs])),
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
        return inference_model(model, device)
    return inference_model(
        copy.deepcopy(model).to(device=device, dtype=torch.float64).eval(), device
    )


def _batches(
    model: torch.nn.Module, configs: Sequence[ase.Atoms], batch_size: int
) -> torch_geometric.dataloader.DataLoader:
    # The same graph construction mace uses when it estimates E0s itself (data.utils.
    # estimate_e0s_from_foundation): the model's own element table and cutoff.
    z_table = AtomicNumberTable(mace_model.atomic_numbers(model))
    cutoff = mace_model.cutoff(model)
    with _default_dtype(torch.float64):
        dataset = [
            AtomicData.from_config(config_from_atoms(atoms), z_table=z_table, cutoff=cutoff)
            for atoms in configs
        ]
    # mace's DataLoader annotates its own Dataset type; it collates any sequence of AtomicData.
    return torch_geometric.dataloader.DataLoader(
        dataset=dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
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
