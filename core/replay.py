"""The replay set a multihead job keeps training its replay head on (science.md §1)."""

import logging
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import ase
import numpy as np

from core.datasets import read_configurations, write_mace_extxyz
from core.errors import TrainingFailedError
from core.spec import ReplaySpec

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

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def prepare_replay_file(
    replay: ReplaySpec,
    source: Path,
    destination: Path,
    *,
    pseudolabel: bool,
    foundation_file: Path,
    target_file: Path,
    seed: int,
) -> ReplayFile:
    configs = _labelled_for_mace(read_configurations(source), pseudolabel)
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
            configs = _farthest_points(configs, replay.num_samples, foundation_file, target_file)
    destination.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(destination, configs, format="extxyz")
    elements = sorted(
        {symbol for atoms in configs for symbol in atoms.get_chemical_symbols()},
        key=ase.data.atomic_numbers.__getitem__,
    )
    return ReplayFile(destination, len(configs), elements, selection, pseudolabel)


def _labelled_for_mace(configs: list[ase.Atoms], pseudolabel: bool) -> list[ase.Atoms]:
    """The configurations with REF_ keys; placeholders where the foundation will relabel them.

    mace only pseudolabels configurations that carry the label keys: without them it trains the
    replay head on nothing, silently.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "replay.extxyz"
        write_mace_extxyz(configs, path)
        prepared = ase.io.read(path, index=":", format="extxyz")
    if not pseudolabel:
        return prepared
    for atoms in prepared:
        atoms.info["REF_energy"] = 0.0
        atoms.arrays["REF_forces"] = np.zeros((len(atoms), 3))
        atoms.info.pop("REF_stress", None)
        if atoms.pbc.all():
            # Stress pseudolabels only mean something for fully periodic cells.
            atoms.info["REF_stress"] = np.zeros(6)
    return prepared


def _farthest_points(
    configs: list[ase.Atoms], count: int, foundation_file: Path, target_file: Path
) -> list[ase.Atoms]:
    """mace's own farthest-point selection on the foundation's descriptors."""
    with tempfile.TemporaryDirectory() as folder:
        pool = Path(folder) / "pool.extxyz"
        selected = Path(folder) / "selected.extxyz"
        ase.io.write(pool, configs, format="extxyz")
        command = [
            sys.executable, "-m", "mace.cli.fine_tuning_select",
            f"--configs_pt={pool}", f"--configs_ft={target_file.resolve()}",
            f"--num_samples={count}", "--subselect=fps", "--filtering_type=none",
            f"--model={foundation_file.resolve()}", "--default_dtype=float64",
            f"--output={selected}",
        ]
        # The selector writes descriptor files into its working folder.
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if result.returncode != 0:
            raise TrainingFailedError(
                f"farthest-point selection of the replay set failed: {result.stderr[-500:]}"
            )
        chosen = ase.io.read(selected, index=":", format="extxyz")
    logger.info("replay fps selected %d of %d configurations", len(chosen), len(configs))
    return chosen
