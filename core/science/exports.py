"""Export variants of a delivered model, each reloaded and checked against it before delivery.

- `torchscript`: the MACE model compiled with e3nn's TorchScript compiler (what mace's own tools
  use), loadable with `torch.jit.load` without mlft or the Python model classes.
- `lammps`: mace-torch's own LAMMPS wrapper, compiled the way `mace.cli.create_lammps_model`
  does it: the `*-lammps.pt` file LAMMPS' `pair_style mace` reads.

A failed export is recorded, not fatal: the `.model` file is what a job must deliver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ase
import numpy as np
import torch

from core.registry.foundations import load_own_model
from core.science.inference import Prediction, _batches, predict

logger = logging.getLogger(__name__)

# A reloaded export must reproduce the trained model's predictions to numerical precision.
ENERGY_TOLERANCE_EV = 1e-6
FORCES_TOLERANCE_EV_PER_A = 1e-6
CHECK_CONFIGS = 3
VARIANTS = ("torchscript", "lammps")


@dataclass(frozen=True)
class ExportResult:
    variant: str
    path: Path | None
    ok: bool
    max_energy_difference_ev: float | None = None
    max_forces_difference_ev_per_a: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "path"}


def export_all(model_path: Path, configs: Sequence[ase.Atoms], out_dir: Path) -> list[ExportResult]:
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_own_model(model_path)
    checks = list(configs[:CHECK_CONFIGS])
    return [
        _attempt(
            "torchscript",
            lambda: export_torchscript(model, out_dir / "torchscript.pt"),
            model,
            checks,
        ),
        _attempt(
            "lammps",
            lambda: export_lammps(model, out_dir / "lammps.pt", out_dir / "torchscript.pt"),
            model,
            checks,
        ),
    ]


def export_torchscript(model: torch.nn.Module, dest: Path) -> Path:
    from e3nn.util import jit

    compiled = jit.compile(_float64(model))
    torch.jit.save(compiled, str(dest))
    return dest


def export_lammps(model: torch.nn.Module, dest: Path, compiled: Path | None = None) -> Path:
    """What `mace.cli.create_lammps_model` does for the libtorch format (float64, the model's
    only head), in this process: the CLI itself spends most of its time importing mace again.
    With `compiled`, the TorchScript export of the same model is reused inside the wrapper
    instead of compiling the model a second time."""
    from e3nn.util import jit
    from mace.calculators import LAMMPS_MACE

    heads = getattr(model, "heads", None) or [None]
    if len(heads) != 1:
        raise ValueError(f"a LAMMPS model needs a single-head model; this one has {heads}")
    wrapped = LAMMPS_MACE(_float64(model), head=heads[0])
    if compiled is not None and compiled.is_file():
        wrapped.model = torch.jit.load(str(compiled), map_location="cpu")
        # LAMMPS_MACE freezes the model's parameters; the loaded copy must be frozen too.
        for parameter in wrapped.model.parameters():
            parameter.requires_grad_(False)
    jit.compile(wrapped).save(str(dest))
    return dest


def compare_torchscript(
    trained: torch.nn.Module, path: Path, configs: Sequence[ase.Atoms]
) -> tuple[float, float]:
    loaded = torch.jit.load(str(path), map_location="cpu")
    reference = predict(trained, configs)
    found = []
    for batch in _batches(trained, configs, len(configs)):
        output = loaded(batch.to_dict(), training=False, compute_force=True)
        found += _split(output["energy"], output["forces"], batch.ptr)
    return _differences(reference, found)


def compare_lammps(
    trained: torch.nn.Module, path: Path, configs: Sequence[ase.Atoms]
) -> tuple[float, float]:
    """The LAMMPS wrapper sums energies of local atoms; with every atom local and no ghosts it
    must give the trained model's total energy and forces. LAMMPS hands it one system at a
    time (its head tensor has one entry), so configurations go one by one."""
    loaded = torch.jit.load(str(path), map_location="cpu")
    reference = predict(trained, configs)
    found = []
    for batch in _batches(trained, configs, 1):
        data = batch.to_dict()
        data["positions"].requires_grad_(True)
        local = torch.ones(data["positions"].shape[0], dtype=torch.float64)
        output = loaded(data, local)
        found += _split(output["total_energy_local"], output["forces"], batch.ptr)
    return _differences(reference, found)


def _attempt(
    variant: str, build: Callable[[], Path], trained: torch.nn.Module, configs: list[ase.Atoms]
) -> ExportResult:
    compare = compare_torchscript if variant == "torchscript" else compare_lammps
    try:
        path = build()
        energy, forces = compare(trained, path, configs)
    except Exception as error:  # an export that cannot be built is reported, never delivered
        logger.warning("export %s failed: %s", variant, error)
        return ExportResult(variant, None, False, error=f"{type(error).__name__}: {error}")
    ok = energy <= ENERGY_TOLERANCE_EV and forces <= FORCES_TOLERANCE_EV_PER_A
    problem = None if ok else "reloaded export does not reproduce the trained model's predictions"
    return ExportResult(variant, path if ok else None, ok, energy, forces, problem)


def _float64(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to(dtype=torch.float64).eval()


def _split(
    energies: torch.Tensor, forces: torch.Tensor, ptr: torch.Tensor
) -> list[tuple[float, np.ndarray]]:
    bounds = ptr.cpu().numpy()
    e = energies.detach().cpu().numpy()
    f = forces.detach().cpu().numpy()
    return [(float(e[i]), f[bounds[i] : bounds[i + 1]]) for i in range(len(e))]


def _differences(
    reference: Sequence[Prediction], found: list[tuple[float, np.ndarray]]
) -> tuple[float, float]:
    energy = max(abs(r.energy - e) for r, (e, _) in zip(reference, found, strict=True))
    forces = max(
        float(np.max(np.abs(r.forces - f))) for r, (_, f) in zip(reference, found, strict=True)
    )
    return float(energy), forces
