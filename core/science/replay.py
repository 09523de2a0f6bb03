"""The replay set a multihead job keeps training its replay head on (science.md §1)."""

import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ase
import numpy as np

from core.data.datasets import read_configurations, write_mace_extxyz
from core.registry.foundations import FoundationModel, load_foundation
from core.science.descriptors import structure_descriptors
from core.science.selection import farthest_point_indices
from core.science.spec import ReplaySpec

logger = logging.getLogger(__name__)

# The study's replay head weights energy 1 and forces 10 where the target head has 10 and 10;
# mace has no per-head loss weights in 0.3.16, so they travel as per-configuration factors.
REPLAY_ENERGY_FACTOR = 0.1
REPLAY_FORCES_FACTOR = 1.0


@dataclass(frozen=True)
class ReplayFile:
    path: Path
    n_configs: int
    elements: list[str]
    selection: str
    pseudolabelled: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def prepare_replay_file(
    replay: ReplaySpec,
    source: Path,
    destination: Path,
    *,
    pseudolabels: Callable[[list[ase.Atoms]], list[ase.Atoms]] | None,
    foundation: FoundationModel,
    seed: int,
) -> ReplayFile:
    """The replay file mace trains its replay head on: weighted, subsampled, and labelled by
    `pseudolabels` (core.science.pseudolabels) when the strategy replays the foundation's own
    labels."""
    configs = _with_mace_keys(read_configurations(source))
    for atoms in configs:
        atoms.info["config_energy_weight"] = REPLAY_ENERGY_FACTOR * replay.weight
        atoms.info["config_forces_weight"] = REPLAY_FORCES_FACTOR * replay.weight
    selection = "all"
    if replay.num_samples is not None and replay.num_samples < len(configs):
        selection = replay.selection
        if replay.selection == "random":
            picked = np.random.default_rng(seed).choice(len(configs), replay.num_samples, False)
            configs = [configs[index] for index in sorted(picked)]
        else:
            configs = _farthest_points(configs, replay.num_samples, foundation, seed)
    if pseudolabels is not None:
        # After the selection: only the structures that are replayed get labelled.
        configs = pseudolabels(configs)
    destination.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(destination, configs, format="extxyz")
    elements = sorted(
        {symbol for atoms in configs for symbol in atoms.get_chemical_symbols()},
        key=ase.data.atomic_numbers.__getitem__,
    )
    return ReplayFile(destination, len(configs), elements, selection, pseudolabels is not None)


def _with_mace_keys(configs: list[ase.Atoms]) -> list[ase.Atoms]:
    """The configurations with their labels under mace's REF_ keys."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "replay.extxyz"
        write_mace_extxyz(configs, path)
        return list(ase.io.iread(path, index=":", format="extxyz"))


def _farthest_points(
    configs: list[ase.Atoms], count: int, foundation: FoundationModel, seed: int
) -> list[ase.Atoms]:
    """Farthest-point selection on the foundation's own descriptors, as replay sets are built."""
    model = load_foundation(foundation)
    picked = farthest_point_indices(structure_descriptors(model, configs), count, seed=seed)
    logger.info("replay fps selected %d of %d configurations", len(picked), len(configs))
    return [configs[index] for index in sorted(picked)]
