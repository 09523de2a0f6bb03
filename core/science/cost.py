"""Cost estimate: time per epoch and peak memory from a few measured training steps.

The probe trains the job's own model (the foundation with the job's E0s, the strategy's frozen or
LoRA parameters) for a few steps on one real batch, and extrapolates to an epoch. The job records
the estimate next to what training then took, so estimates can be judged.
"""

from __future__ import annotations

import copy
import math
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import ase
import numpy as np
import psutil
import torch

from core.data.label_values import labels_of
from core.registry import mace_model
from core.science.edge_budget import bytes_per_edge
from core.science.inference import (
    Neighbourhood,
    batch_by_edges,
    collate,
    edge_budget,
    neighbourhood,
)
from core.science.model_checks import trained_parameters
from core.science.spec import JobSpec, replay_of

PROBE_STEPS = 3
# Timed steps stop early once they have taken this long (at least one is timed): a step of a
# MACE-MP-0-sized model on a 100-atom cell takes seconds on a CPU, and the median of fewer steps
# is as good as the preflight needs.
PROBE_SECONDS = 10.0
# The probe trains on a quarter of the edge budget at most (one configuration when a single one
# is larger), then scales up by the edge ratio.
PROBE_EDGE_SHARE = 0.25
# Validation is a forward and backward pass for forces without the optimiser step: about half a
# training step per batch on the probe's measurements.
VALIDATION_STEP_SHARE = 0.5


@dataclass(frozen=True)
class CostEstimate:
    device: str
    seconds_per_step: float
    steps_per_epoch: int
    seconds_per_epoch: float
    peak_memory_mb: float
    memory_kind: str  # "cuda_allocated" or "process_rss"
    probe_steps: int
    basis: str
    # One edge's share of the step's peak above what was held before it (issue 27): what a
    # GPU's edge budget is planned with (core.science.edge_budget).
    bytes_per_edge: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def probe_cost(
    spec: JobSpec,
    model: torch.nn.Module,
    batch_configs: Sequence[ase.Atoms],
    n_valid: int,
    *,
    n_train: int,
    n_replay: int = 0,
    device: str = "cpu",
    neighbourhoods: Sequence[Neighbourhood] | None = None,
    max_edges: int | None = None,
) -> CostEstimate:
    """Measure `PROBE_STEPS` optimiser steps of the job's model on one batch of its training
    configurations (`batch_configs`, batch size or fewer; `neighbourhoods` their graphs, reused
    from the preflight's predictions).

    A batch above a quarter of the edge budget (MLFT_MAX_EDGES_PER_BATCH) is probed on its first
    configurations within that, and time and memory growth are scaled by the edge ratio:
    a MACE step's cost is linear in edges, and probing a whole batch of large cells would cost
    minutes and gigabytes before the job has started.
    """
    hyper = spec.hyperparameters
    trainable = trainable_copy(spec, model).to(device=device, dtype=torch.float64).train()
    parameters = [p for p in trainable.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=1e-6)
    batch_configs = list(batch_configs[: hyper.batch_size])
    graphs = list(neighbourhoods or [])[: len(batch_configs)] or [
        neighbourhood(atoms, mace_model.cutoff(model)) for atoms in batch_configs
    ]
    edges = [g.n_edges for g in graphs]
    probed = batch_by_edges(edges, int(PROBE_EDGE_SHARE * edge_budget(max_edges)))[0]
    probe_configs = [batch_configs[i] for i in probed]
    scale = max(1.0, (sum(edges) + len(edges)) / (sum(edges[i] for i in probed) + len(probed)))
    zs = mace_model.atomic_numbers(trainable)
    batch = collate(zs, probe_configs, [graphs[i] for i in probed], device)
    energies = torch.tensor([labels_of(a).energy for a in probe_configs], dtype=torch.float64)
    forces = torch.tensor(
        np.concatenate([labels_of(a).forces for a in probe_configs]), dtype=torch.float64
    )
    energies, forces = energies.to(device), forces.to(device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    process = psutil.Process()
    baseline = torch.cuda.memory_allocated(device) if cuda else process.memory_info().rss
    peak_rss = baseline
    timings: list[float] = []
    # The first step pays one-off costs and is not timed.
    while len(timings) < PROBE_STEPS + 1 and (len(timings) < 2 or sum(timings[1:]) < PROBE_SECONDS):
        start = time.perf_counter()
        optimiser.zero_grad()
        output = trainable(dict(batch), training=True, compute_force=True)
        loss = torch.mean((output["energy"] - energies) ** 2) + torch.mean(
            (output["forces"] - forces) ** 2
        )
        loss.backward()
        optimiser.step()
        if cuda:
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - start)
        peak_rss = max(peak_rss, process.memory_info().rss)
    per_step = float(np.median(timings[1:])) * scale
    # Replay strategies also step through their replay data every epoch.
    steps = math.ceil((n_train + n_replay) / hyper.batch_size)
    valid_steps = math.ceil(n_valid / hyper.valid_batch_size)
    epoch = per_step * (steps + VALIDATION_STEP_SHARE * valid_steps)
    peak = torch.cuda.max_memory_allocated(device) if cuda else peak_rss
    memory = baseline + (peak - baseline) * scale
    basis = (
        f"{len(timings) - 1} timed steps on a batch of {len(batch_configs)} training "
        f"configurations; batch size {hyper.batch_size}, validation batch size "
        f"{hyper.valid_batch_size}"
    )
    if len(probed) < len(batch_configs):
        basis += (
            f"; probed on {len(probed)} of them (the edge budget), time and memory growth "
            f"scaled by their edge ratio {scale:.2f}"
        )
    return CostEstimate(
        device=device,
        seconds_per_step=per_step,
        steps_per_epoch=steps,
        seconds_per_epoch=epoch,
        peak_memory_mb=memory / 2**20,
        memory_kind="cuda_allocated" if cuda else "process_rss",
        probe_steps=len(timings) - 1,
        basis=basis,
        bytes_per_edge=bytes_per_edge(peak, baseline, sum(edges[i] + 1 for i in probed)),
    )


def actual_cost(training_seconds: float, epochs: int) -> dict[str, float | int | None]:
    """What training took: wall time per epoch (mace's start-up included) and the peak resident
    memory of the largest child process (the mace trainer)."""
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    peak_mb = peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20
    return {
        "training_seconds": training_seconds,
        "epochs": epochs,
        "seconds_per_epoch": training_seconds / epochs if epochs else None,
        "peak_child_rss_mb": peak_mb,
    }


def trainable_copy(spec: JobSpec, model: torch.nn.Module) -> torch.nn.Module:
    probe, trains = trained_parameters(spec, copy.deepcopy(model))
    for name, parameter in probe.named_parameters():
        parameter.requires_grad_(trains(name))
    return probe


def replay_count(spec: JobSpec, n_replay_available: int) -> int:
    replay = replay_of(spec.strategy)
    if replay is None:
        return 0
    return min(replay.num_samples or n_replay_available, n_replay_available)
