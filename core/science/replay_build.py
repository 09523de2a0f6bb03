"""Build a replay set: pool candidate structures, drop near-duplicates, choose a diverse subset by
farthest-point sampling on the foundation's own descriptors, and label it with the foundation.

A plain function on configurations and a model, without database or queue;
core.workflows.replay_sets adds the row, the stored dataset and the cache around it.
"""

import importlib.util
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ase
import numpy as np
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers

from core.data import structure_generation
from core.data.structure_generation import GENERATED_SOURCES, Candidate
from core.errors import InvalidSpecError
from core.registry import mace_model
from core.science.descriptors import structure_descriptors
from core.science.inference import predict
from core.science.selection import coverage, distinct_indices, farthest_point_indices

logger = logging.getLogger(__name__)

RANDOM_CRYSTAL_SOURCE = "random_crystal"
POOL_SOURCE = "pool"
# Candidates generated per structure wanted: farthest-point sampling needs room to choose.
OVERSAMPLING = 3
MIN_CANDIDATES_PER_SOURCE = 8
# Random crystals: element combinations up to this many species, up to this many atoms per cell.
RANDOM_CRYSTAL_MAX_SPECIES = 3
RANDOM_CRYSTAL_MAX_ATOMS = 8
# A pool far larger than needed is subsampled (seeded) before descriptors are computed.
MAX_POOL_PER_STRUCTURE = 20

ProgressCallback = Callable[[str, int, int], None]


def random_crystals_available() -> bool:
    """Whether core.data.random_crystals (PyXtal, shared with the structure-search evaluation)
    exists."""
    return importlib.util.find_spec("core.data.random_crystals") is not None


def available_sources() -> tuple[str, ...]:
    extra = (RANDOM_CRYSTAL_SOURCE,) if random_crystals_available() else ()
    return GENERATED_SOURCES + extra


@dataclass(frozen=True)
class ReplayBuildInputs:
    elements: list[str]
    # The user's own configurations: what the generated sources perturb, and what coverage is
    # measured for.
    configurations: list[ase.Atoms]
    sources: list[str]
    size: int
    seed: int
    pool: list[ase.Atoms] = field(default_factory=list)


@dataclass(frozen=True)
class BuiltReplaySet:
    structures: list[ase.Atoms]  # labelled by the foundation; config_type names the source
    report: dict[str, Any]


def build_replay_set(
    model: torch.nn.Module,
    inputs: ReplayBuildInputs,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
) -> BuiltReplaySet:
    progress = on_progress or (lambda _stage, _done, _total: None)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    progress("generating", 0, 1)
    candidates, per_source, skipped = _candidates(model, inputs)
    if not candidates:
        raise InvalidSpecError(
            "no candidate structures: "
            + ("; ".join(f"{s}: {why}" for s, why in skipped.items()) or "no sources given")
        )
    timings["generation_s"] = time.perf_counter() - start

    start = time.perf_counter()
    descriptors = _descriptors_in_chunks(
        model, [c.atoms for c in candidates], batch_size, device, progress
    )
    timings["descriptors_s"] = time.perf_counter() - start

    start = time.perf_counter()
    progress("selecting", 0, 1)
    distinct = distinct_indices(descriptors)
    chosen = distinct[farthest_point_indices(descriptors[distinct], inputs.size, seed=inputs.seed)]
    timings["selection_s"] = time.perf_counter() - start

    start = time.perf_counter()
    selected = [candidates[index] for index in chosen]
    structures = _labelled(model, selected, batch_size, device, progress)
    timings["labelling_s"] = time.perf_counter() - start

    report = _report(inputs, candidates, distinct, chosen, per_source, skipped, structures)
    # Coverage of the user's configurations that the set can cover: those of its elements.
    own = [
        atoms
        for atoms in inputs.configurations
        if set(atoms.get_chemical_symbols()) <= set(inputs.elements)
    ]
    if own:
        own_descriptors = structure_descriptors(model, own, batch_size=batch_size, device=device)
        report["coverage"] = coverage(own_descriptors, descriptors[chosen]).to_dict()
    report["timings"] = timings
    logger.info(
        "replay set built: %d of %d candidates (%d distinct)",
        len(structures),
        len(candidates),
        len(distinct),
    )
    return BuiltReplaySet(structures, report)


def _candidates(
    model: torch.nn.Module, inputs: ReplayBuildInputs
) -> tuple[list[Candidate], dict[str, int], dict[str, str]]:
    generated = [s for s in inputs.sources if s != POOL_SOURCE]
    per_source_count = max(
        MIN_CANDIDATES_PER_SOURCE,
        math.ceil(OVERSAMPLING * inputs.size / max(len(generated), 1)),
    )
    seeds = structure_generation.seed_structures(inputs.configurations, inputs.elements)
    cutoff = mace_model.cutoff(model)
    candidates: list[Candidate] = []
    skipped: dict[str, str] = {}
    for source in generated:
        if source == RANDOM_CRYSTAL_SOURCE:
            made = _random_crystals(inputs.elements, per_source_count, inputs.seed)
        else:
            # Each source its own random stream, keyed by its name, not its place in the list.
            rng = np.random.default_rng([inputs.seed, GENERATED_SOURCES.index(source)])
            made = structure_generation.generate(
                source, seeds, inputs.elements, per_source_count, rng, cutoff=cutoff
            )
        if not made:
            skipped[source] = _why_empty(source)
        candidates += made
    candidates += _pool(inputs, skipped)
    per_source = dict(Counter(candidate.source for candidate in candidates))
    return candidates, per_source, skipped


def _why_empty(source: str) -> str:
    if source in ("strain", "supercell", "surface"):
        return "needs periodic configurations of these elements (none given, no reference crystal)"
    if source == RANDOM_CRYSTAL_SOURCE:
        return "PyXtal produced no crystal for these element combinations"
    return "no configuration to start from"


def _pool(inputs: ReplayBuildInputs, skipped: dict[str, str]) -> list[Candidate]:
    if not inputs.pool:
        return []
    allowed = set(inputs.elements)
    usable = [atoms for atoms in inputs.pool if set(atoms.get_chemical_symbols()) <= allowed]
    if not usable:
        skipped[POOL_SOURCE] = (
            f"none of its {len(inputs.pool)} configurations is made only of "
            f"{', '.join(inputs.elements)}"
        )
        return []
    left_out = []
    if len(usable) < len(inputs.pool):
        left_out.append(f"{len(inputs.pool) - len(usable)} configurations with other elements")
    limit = MAX_POOL_PER_STRUCTURE * inputs.size
    if len(usable) > limit:
        left_out.append(f"a random {len(usable) - limit} of {len(usable)} beyond {limit}")
        picked = np.random.default_rng(inputs.seed).choice(len(usable), limit, replace=False)
        usable = [usable[index] for index in sorted(picked)]
    if left_out:
        # Not skipped, but not whole either: the report says what was left out.
        skipped[POOL_SOURCE] = "left out " + " and ".join(left_out)
    return [Candidate(structure_generation.bare(atoms), POOL_SOURCE) for atoms in usable]


def _random_crystals(elements: Sequence[str], count: int, seed: int) -> list[Candidate]:
    from core.data.random_crystals import random_crystals

    combinations = [
        combination
        for size in range(1, min(RANDOM_CRYSTAL_MAX_SPECIES, len(elements)) + 1)
        for combination in itertools.combinations(sorted(elements), size)
    ]
    rng = np.random.default_rng(seed)
    per_combination = max(1, math.ceil(count / len(combinations)))
    made: list[Candidate] = []
    for index, combination in enumerate(combinations):
        most = max(1, RANDOM_CRYSTAL_MAX_ATOMS // len(combination))
        composition = {symbol: int(rng.integers(1, most + 1)) for symbol in combination}
        for crystal in random_crystals(composition, per_combination, seed + index):
            if crystal.atoms is not None:
                made.append(Candidate(crystal.atoms, RANDOM_CRYSTAL_SOURCE))
    return made[:count]


def _descriptors_in_chunks(
    model: torch.nn.Module,
    configs: list[ase.Atoms],
    batch_size: int,
    device: str,
    progress: ProgressCallback,
) -> np.ndarray:
    chunk = 16 * batch_size
    parts = []
    for first in range(0, len(configs), chunk):
        progress("descriptors", first, len(configs))
        parts.append(
            structure_descriptors(
                model, configs[first : first + chunk], batch_size=batch_size, device=device
            )
        )
    progress("descriptors", len(configs), len(configs))
    return np.concatenate(parts)


def _labelled(
    model: torch.nn.Module,
    selected: list[Candidate],
    batch_size: int,
    device: str,
    progress: ProgressCallback,
) -> list[ase.Atoms]:
    chunk = 16 * batch_size
    structures = []
    for first in range(0, len(selected), chunk):
        progress("labelling", first, len(selected))
        part = selected[first : first + chunk]
        configs = [candidate.atoms for candidate in part]
        predictions = predict(
            model, configs, batch_size=batch_size, device=device, forces=True, stress=True
        )
        for candidate, prediction in zip(part, predictions, strict=True):
            atoms = candidate.atoms.copy()
            results: dict[str, Any] = {"energy": prediction.energy, "forces": prediction.forces}
            if prediction.stress is not None:
                results["stress"] = prediction.stress
            atoms.calc = SinglePointCalculator(atoms, **results)
            atoms.info["config_type"] = candidate.source
            structures.append(atoms)
    progress("labelling", len(selected), len(selected))
    return structures


def _report(
    inputs: ReplayBuildInputs,
    candidates: list[Candidate],
    distinct: np.ndarray,
    chosen: np.ndarray,
    per_source: dict[str, int],
    skipped: dict[str, str],
    structures: list[ase.Atoms],
) -> dict[str, Any]:
    distinct_sources = Counter(candidates[index].source for index in distinct)
    selected_sources = Counter(candidates[index].source for index in chosen)
    sources = {
        source: {
            "candidates": count,
            "distinct": distinct_sources.get(source, 0),
            "selected": selected_sources.get(source, 0),
        }
        for source, count in per_source.items()
    }
    element_counts = Counter(s for atoms in structures for s in atoms.get_chemical_symbols())
    systems = Counter(
        "-".join(sorted(set(atoms.get_chemical_symbols()), key=atomic_numbers.__getitem__))
        for atoms in structures
    )
    cut = None
    if len(structures) < inputs.size:
        cut = (
            f"asked for {inputs.size} structures, but only {len(distinct)} of "
            f"{len(candidates)} candidates are distinct (near-duplicates removed); the set "
            f"holds {len(structures)}. Add sources, configurations or a pool to get more"
        )
    return {
        "requested_size": inputs.size,
        "size": len(structures),
        "cut": cut,
        "candidates": len(candidates),
        "distinct_candidates": len(distinct),
        "duplicates_removed": len(candidates) - len(distinct),
        "sources": sources,
        # Sources that gave nothing, or (the pool) less than all they had, and why.
        "skipped_sources": skipped,
        "source_histogram": dict(selected_sources),
        "composition": {
            "element_counts": dict(element_counts),
            "structures_per_element_combination": dict(systems),
            "n_atoms": sum(len(atoms) for atoms in structures),
            "n_periodic": sum(bool(atoms.pbc.all()) for atoms in structures),
        },
    }
