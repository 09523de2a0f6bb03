"""Preflight: what the foundation model and the data say about a job before any training.

Seconds on a CPU: the foundation predicts the training data once (batched, energies cached for E0
estimation), and the pure functions of core.science.preflight_findings turn those predictions into
findings and a suggestion. A blocking finding stops a job before training (science.md §2: an E0
mismatch found after hours of training is the failure this prevents).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import ase
import numpy as np
import torch
from ase.data import chemical_symbols

from core.data.label_values import is_isolated_atom, labels_of
from core.errors import InvalidSpecError
from core.registry import mace_model
from core.science.cache import PredictionCache
from core.science.cost import CostEstimate, probe_cost
from core.science.e0s import (
    elements_of,
    model_e0s,
)
from core.science.inference import Neighbourhood, Prediction, edge_budget, neighbourhood, predict
from core.science.preflight_findings import FoundationPredictions, PreflightReport, review
from core.science.spec import (
    JobSpec,
    ScratchStrategy,
)


def blocking_message(report: PreflightReport) -> str:
    codes = ", ".join(dict.fromkeys(repr(finding.code) for finding in report.blocking))
    return (
        "preflight: "
        + "; ".join(f"[{finding.code}] {finding.message}" for finding in report.blocking)
        + f". To train anyway, add {codes} to preflight.acknowledge"
    )


# Forces for a seeded sample of the configurations, as many as fit in this many batches of
# MLFT_MAX_EDGES_PER_BATCH edges (at least one configuration, at most FORCE_SAMPLE): a force
# comparison and unit check need a few thousand components, not the whole dataset. Energies are
# predicted for every configuration, since E0 estimation needs them and reuses them through the
# cache, but without the backward pass forces cost.
FORCE_SAMPLE = 500
FORCE_SAMPLE_BATCHES = 2


@dataclass(frozen=True)
class PreflightOutcome:
    report: PreflightReport
    # The foundation's energies of the training molecules, in order: E0 estimation reuses them.
    predictions: FoundationPredictions | None
    cost: CostEstimate | None


def run_preflight(
    spec: JobSpec,
    configs: Sequence[ase.Atoms],
    foundation_model: torch.nn.Module | None,
    *,
    isolated_atoms: Sequence[ase.Atoms] = (),
    foundation_sha256: str | None = None,
    cache: PredictionCache | None = None,
    device: str = "cpu",
    n_replay: int = 0,
) -> PreflightOutcome:
    """Preflight of a job's training data: findings, suggestion and a cost probe. `configs` are
    the training dataset's configurations; isolated atoms (core.data.label_values) are E0
    references."""
    started = time.perf_counter()
    # The same selection as core.workflows.training's candidates, so their predictions line up.
    molecules = [atoms for atoms in configs if not is_isolated_atom(atoms)]
    isolated = {
        atoms.get_chemical_symbols()[0]: float(energy)
        for atoms in [*isolated_atoms, *(a for a in configs if is_isolated_atom(a))]
        if (energy := labels_of(atoms).energy) is not None
    }
    labels = [labels_of(atoms) for atoms in molecules]
    unlabelled = [i for i, lab in enumerate(labels) if lab.energy is None or lab.forces is None]
    if unlabelled:
        raise InvalidSpecError(
            f"{len(unlabelled)} training configuration(s) lack an energy or forces label; "
            "preflight and training need both"
        )
    energies = np.array([lab.energy for lab in labels], dtype=float)
    known = (
        [chemical_symbols[z] for z in mace_model.atomic_numbers(foundation_model)]
        if foundation_model is not None
        else None
    )
    scratch = isinstance(spec.strategy, ScratchStrategy)
    predictions = None
    foundation_e0s = None
    covered = known is not None and set(elements_of(molecules)) <= set(known)
    graphs: list[Neighbourhood] = []
    if foundation_model is not None and covered and molecules:
        # Built once: the foundation's predictions and the cost probe both read them.
        graphs = [neighbourhood(atoms, mace_model.cutoff(foundation_model)) for atoms in molecules]
        predictions = foundation_predictions(
            foundation_model,
            molecules,
            sha256=foundation_sha256,
            cache=cache,
            device=device,
            neighbourhoods=graphs,
        )
        foundation_e0s = {chemical_symbols[z]: e0 for z, e0 in model_e0s(foundation_model).items()}
    report = review(
        molecules,
        energies,
        [lab.forces for lab in labels],
        predictions,
        known_elements=known,
        foundation_e0s=foundation_e0s,
        scratch=scratch,
        e0_method=spec.e0s,
        isolated_energies=isolated,
        acknowledge=spec.preflight.acknowledge,
        positions=[i for i, atoms in enumerate(configs) if not is_isolated_atom(atoms)],
    )
    cost = None
    if foundation_model is not None and covered and not scratch and molecules:
        # The split's sizes as core.workflows.training will make them (train_fraction first).
        used = len(molecules)
        if spec.train_fraction < 1:
            used = min(used, max(2, round(spec.train_fraction * used)))
        n_valid = max(1, round(spec.valid_fraction * used))
        n_test = round(spec.split.test_fraction * used)
        batch = spec.hyperparameters.batch_size
        cost = probe_cost(
            spec,
            foundation_model,
            molecules[:batch],
            n_valid,
            n_train=max(1, used - n_valid - n_test),
            n_replay=n_replay,
            device=device,
            neighbourhoods=graphs[:batch],
        )
    report = replace(report, seconds=time.perf_counter() - started)
    return PreflightOutcome(report, predictions, cost)


def foundation_predictions(
    model: torch.nn.Module,
    molecules: Sequence[ase.Atoms],
    *,
    sha256: str | None,
    cache: PredictionCache | None,
    device: str = "cpu",
    neighbourhoods: Sequence[Neighbourhood] | None = None,
) -> FoundationPredictions:
    """Energies of every configuration (through the cache E0 estimation shares) and forces of a
    seeded sample bounded by edges (FORCE_SAMPLE_BATCHES)."""
    graphs = list(neighbourhoods or [neighbourhood(a, mace_model.cutoff(model)) for a in molecules])
    sample = force_sample([g.n_edges for g in graphs], FORCE_SAMPLE_BATCHES * edge_budget())
    picked = [molecules[i] for i in sample]
    with_forces = predict(model, picked, device=device, neighbourhoods=[graphs[i] for i in sample])

    def compute() -> np.ndarray:
        energies = np.empty(len(molecules), dtype=np.float64)
        energies[sample] = [p.energy for p in with_forces]
        rest = sorted(set(range(len(molecules))) - set(sample))
        if rest:
            others = predict(
                model,
                [molecules[i] for i in rest],
                device=device,
                forces=False,
                neighbourhoods=[graphs[i] for i in rest],
            )
            energies[rest] = [p.energy for p in others]
        return energies

    energies = cache.energies(sha256, molecules, compute) if cache and sha256 else compute()
    return FoundationPredictions(energies, [_asked_forces(p) for p in with_forces], sample)


def _asked_forces(prediction: Prediction) -> np.ndarray:
    assert prediction.forces is not None  # predict(forces=True) gives every prediction forces
    return prediction.forces


def force_sample(edge_counts: Sequence[int], max_edges: int) -> list[int]:
    """Indices (sorted) of a seeded random sample whose edges fit `max_edges`; at least one."""
    order = np.random.default_rng(0).permutation(len(edge_counts))
    chosen: list[int] = []
    total = 0
    for index in order[:FORCE_SAMPLE]:
        if chosen and total + edge_counts[index] > max_edges:
            break
        chosen.append(int(index))
        total += edge_counts[index]
    return sorted(chosen)
