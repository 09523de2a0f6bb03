"""A tiny MACE foundation model trained here on EMT data, for tests and the demo (no downloads).

It is trained with mace-torch's own `run_train.run`, so it is exactly the kind of whole pickled
module that real foundations (MACE-MP, MACE-OFF) are: loadable with `torch.load` and
`MACECalculator`, with two interaction blocks so every freezing strategy has something to freeze.
"""

import hashlib
import logging
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch
from ase.data import atomic_numbers
from mace.cli.run_train import run as run_mace_training
from mace.tools import build_default_arg_parser

from core.artifacts.atomic_files import copy_atomically, write_atomically
from core.data.demo_data import (
    EMT_ELEMENTS,
    generate_foundation_configurations,
    isolated_atom_energies,
    write_extxyz,
)
from core.registry.foundations import build_progress, building_marker, mark_building, pin_model_file
from core.science.strategies import saved_model_file, shared_arguments

logger = logging.getLogger(__name__)
DEMO_FOUNDATION_NAME = "mace-demo-emt"
DEFAULT_N_CONFIGS = 1000
DEFAULT_MAX_EPOCHS = 24
# The build's output (seed 0, the defaults above; mace-torch 0.3.16, torch 2.13), shipped so that
# neither a first start nor a CI run spends two minutes of two cores training it (issue 16). The
# pin is checked before the file is installed; rebuild it with
# `python scripts/build_demo_foundation.py --force --out core/science/shipped/mace-demo-emt.model`
# and update the pin when mace-torch's pickled classes change.
SHIPPED_DEMO_MODEL = Path(__file__).resolve().parent / "shipped" / f"{DEMO_FOUNDATION_NAME}.model"
SHIPPED_DEMO_SHA256 = "2eb0386cf9da040b1ffc9332f353969fa07fe8db64971083d903ed16ee1075f3"


def install_shipped_demo_foundation(out_path: Path) -> bool:
    """Copy the shipped demo foundation to `out_path` and pin it, if its bytes are the pinned
    ones; False (and nothing written) when they are not, so the caller builds it instead."""
    try:
        data = SHIPPED_DEMO_MODEL.read_bytes()
    except OSError:
        logger.warning("no shipped demo foundation at %s; building it", SHIPPED_DEMO_MODEL)
        return False
    if hashlib.sha256(data).hexdigest() != SHIPPED_DEMO_SHA256:
        logger.warning(
            "the shipped demo foundation %s is not the pinned file; building it",
            SHIPPED_DEMO_MODEL,
        )
        return False
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out_path, lambda partial: partial.write_bytes(data))  # as a build does
    pin_model_file(out_path, replace=True)
    logger.info("installed the shipped demo foundation at %s", out_path)
    return True


def build_demo_foundation(
    out_path: Path,
    *,
    seed: int = 0,
    n_configs: int = DEFAULT_N_CONFIGS,
    max_epochs: int = DEFAULT_MAX_EPOCHS,
    work_dir: Path | None = None,
) -> Path:
    """Train the demo foundation on fresh EMT data and copy its `.model` file to `out_path`.

    mace-torch's logs, checkpoints and results go to `work_dir`, a temporary folder by default.
    While it builds, `<out_path>.building` says so (build_progress reads it): the registry lists
    the model as building, and jobs naming it are refused with 503 until the file is there.
    """
    marker = building_marker(out_path)
    with tempfile.TemporaryDirectory(prefix="mace-demo-") as scratch:
        folder = work_dir if work_dir is not None else Path(scratch)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        mark_building(marker, folder, max_epochs)
        try:
            configs = generate_foundation_configurations(n_configs, seed)
            train_file = write_extxyz(configs, folder / "train.xyz")
            argv = _mace_argv(train_file, folder, seed=seed, max_epochs=max_epochs)
            with _restored_process_state():
                run_mace_training(build_default_arg_parser().parse_args(argv))
            copy_atomically(saved_model_file(folder, DEMO_FOUNDATION_NAME), out_path)
            # Registered as it is written: the registry serves only pinned files.
            pin_model_file(out_path, replace=True)
        finally:
            marker.unlink(missing_ok=True)
    return out_path


def start_background_build(out_path: Path, log: TextIO) -> subprocess.Popen | None:
    """Build the demo foundation in a child process, unless it exists or is being built; the
    API answers meanwhile (first start)."""
    if out_path.is_file() or build_progress(out_path) is not None:
        return None
    script = Path(__file__).resolve().parents[2] / "scripts" / "build_demo_foundation.py"
    process = subprocess.Popen(
        [sys.executable, str(script), "--out", str(out_path.resolve())], stdout=log, stderr=log
    )
    logger.info("demo foundation build started pid=%d out=%s", process.pid, out_path)
    return process


def demo_foundation_e0s() -> dict[str, float]:
    """The E0s inside the demo foundation: EMT energies of isolated atoms, by element symbol."""
    return isolated_atom_energies(EMT_ELEMENTS)


def _mace_argv(train_file: Path, work_dir: Path, *, seed: int, max_epochs: int) -> list[str]:
    zs = sorted(atomic_numbers[symbol] for symbol in EMT_ELEMENTS)
    return [
        f"--name={DEMO_FOUNDATION_NAME}",
        f"--seed={seed}",
        f"--train_file={train_file}",
        "--valid_fraction=0.1",
        *shared_arguments(work_dir),
        # Fixing the element list keeps all eleven EMT elements in the model even when a small
        # n_configs leaves one out of the sample.
        f"--atomic_numbers={zs}",
        f"--E0s={_e0s_literal(demo_foundation_e0s())}",
        # Plain MACE with a non-residual first interaction gives an isolated atom exactly its E0:
        # ScaleShiftMACE adds its shift to every atom, and a residual first block feeds the
        # element embedding into the readout even without neighbours.
        "--model=MACE",
        "--interaction_first=RealAgnosticInteractionBlock",
        "--num_interactions=2",
        "--hidden_irreps=8x0e+8x1o",
        "--max_ell=1",
        "--correlation=2",
        "--r_max=4.5",
        "--num_radial_basis=6",
        "--radial_MLP=[16, 16]",
        "--MLP_irreps=8x0e",
        "--batch_size=16",
        "--valid_batch_size=32",
        f"--max_num_epochs={max_epochs}",
        "--lr=0.02",
        "--ema",
        "--ema_decay=0.99",
        "--energy_weight=5",
        "--forces_weight=10",
        "--device=cpu",
        "--pin_memory=False",
    ]


def _e0s_literal(e0s: Mapping[str, float]) -> str:
    # mace parses --E0s with ast.literal_eval and indexes it by atomic number, so the keys must be
    # int literals ({1: 3.21, ...}), not element symbols.
    by_z = {atomic_numbers[symbol]: energy for symbol, energy in e0s.items()}
    return "{" + ", ".join(f"{z}: {by_z[z]!r}" for z in sorted(by_z)) + "}"


@contextmanager
def _restored_process_state() -> Iterator[None]:
    # mace's run() sets torch's default dtype for the whole process and adds handlers (stdout and
    # two files in the work dir) and a filter to the root logger on every call; undo both so that
    # callers and later runs are unaffected.
    root = logging.getLogger()
    saved = (torch.get_default_dtype(), root.level, list(root.handlers), list(root.filters))
    try:
        yield
    finally:
        dtype, level, handlers, filters = saved
        torch.set_default_dtype(dtype)
        for handler in set(root.handlers) - set(handlers):
            root.removeHandler(handler)
            handler.close()
        root.filters = filters
        root.setLevel(level)
