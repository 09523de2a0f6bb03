"""Offline stand-ins for published MACE foundations: the same mace-torch module classes and
hyperparameters, random weights (issue 16).

No published weights can be downloaded here, yet users arrive with MACE-MP-0 small (89 elements,
ScaleShiftMACE, residual first block), MACE-OFF23 small (10 organic elements) or multi-head models.
A stand-in is built with mace's own `mace.modules.ScaleShiftMACE`, exactly as
`mace.tools.model_script_utils._build_model` builds a ScaleShiftMACE, so every code path that
depends on the architecture (lone-atom energies through the residual block, the non-zero
ScaleShift shift, per-head buffers, export, freezing prefixes) is exercised; the numbers it
predicts mean nothing physically.

Files are cached by content: the name holds a hash of the recipe, the dtype and the mace version,
so a changed recipe builds a new file and an unchanged one is reused. They are placed in the
models folder as an operator places a downloaded file (`<name>.model` with its sha256 pin), and
converted to their safe form by the registry's sandbox like any other; the pickle stays beside
it as the original the tests compare the rebuilt model with.
"""

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from ase.data import chemical_symbols

from core.registry.foundations import FoundationRegistry
from core.registry.pins import pin_model_file, pin_path

Dtype = Literal["float32", "float64"]
ORGANIC = (1, 6, 7, 8, 9, 15, 16, 17, 35, 53)  # H C N O F P S Cl Br I: MACE-OFF23's elements


@dataclass(frozen=True)
class StandinRecipe:
    """Architecture of a published foundation, in mace's own constructor arguments."""

    family: str
    atomic_numbers: tuple[int, ...]
    hidden_irreps: str
    r_max: float
    heads: tuple[str, ...] = ("Default",)
    # One value per head; rms_forces_scaling gives real models a scale near 1 eV/Å per unit of
    # interaction output, and a mean-energy shift of a fraction of an eV per atom.
    scales: tuple[float, ...] = (0.8,)
    shifts: tuple[float, ...] = (-0.05,)
    max_ell: int = 3
    correlation: int = 3
    num_interactions: int = 2
    mlp_irreps: str = "16x0e"
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    radial_mlp: tuple[int, ...] = (64, 64, 64)
    avg_num_neighbors: float = 30.0
    seed: int = 0
    # Added to every head-0 E0 for head i: heads stand for levels of theory with other zeros.
    head_e0_offsets: tuple[float, ...] = (0.0,)

    def digest(self, dtype: Dtype) -> str:
        import mace

        content = json.dumps(
            {"recipe": asdict(self), "dtype": dtype, "mace": mace.__version__}, sort_keys=True
        )
        return hashlib.sha256(content.encode()).hexdigest()[:12]

    def registry_name(self, dtype: Dtype) -> str:
        return f"standin-{self.family}-{dtype}-{self.digest(dtype)}"


# MACE-MP-0 "small" (2023-12-10-mace-128-L0): 89 elements, 128x0e, max_ell 3, correlation 3,
# r_max 6 Å, two interactions, MLP 16x0e, 8 Bessel functions, polynomial cutoff p=5.
MACE_MP_0_SMALL = StandinRecipe(
    family="mace-mp-0-small",
    atomic_numbers=tuple(range(1, 90)),
    hidden_irreps="128x0e",
    r_max=6.0,
    scales=(0.82,),
    shifts=(-0.07,),
    avg_num_neighbors=61.96,
)
# MACE-OFF23 "small": the ten organic elements, 96x0e, r_max 4.5 Å.
MACE_OFF23_SMALL = StandinRecipe(
    family="mace-off23-small",
    atomic_numbers=ORGANIC,
    hidden_irreps="96x0e",
    r_max=4.5,
    scales=(0.51,),
    shifts=(0.03,),
    avg_num_neighbors=11.0,
)
# A multi-head ScaleShiftMACE (one readout per level of theory, as mace's multi-head foundations):
# per-head E0s, scale and shift. Kept narrow (32x0e) so that tests fine-tuning it stay quick; its
# structure, not its width, is what the multi-head code paths depend on.
MULTIHEAD = StandinRecipe(
    family="mace-multihead",
    atomic_numbers=tuple(range(1, 90)),
    hidden_irreps="32x0e",
    r_max=5.0,
    heads=("pbe_d3", "r2scan"),
    scales=(0.8, 0.6),
    shifts=(-0.05, 0.12),
    head_e0_offsets=(0.0, -0.4),
    avg_num_neighbors=30.0,
)
RECIPES = {recipe.family: recipe for recipe in (MACE_MP_0_SMALL, MACE_OFF23_SMALL, MULTIHEAD)}


def standin_e0s(atomic_numbers: tuple[int, ...]) -> dict[int, float]:
    """Plausible isolated-atom energies (eV): EMT's where it has them, a smooth guess otherwise."""
    from core.data.demo_data import EMT_ELEMENTS, isolated_atom_energies

    emt = isolated_atom_energies(list(EMT_ELEMENTS))
    return {z: emt.get(chemical_symbols[z], -1.0 - 0.02 * z) for z in atomic_numbers}


def build_standin(recipe: StandinRecipe, dtype: Dtype) -> torch.nn.Module:
    """A ScaleShiftMACE with the recipe's architecture and seeded random weights."""
    import numpy as np
    from mace import modules  # first: mace makes e3nn's own torch.load work under torch>=2.6
    from e3nn import o3  # isort: skip

    previous = torch.get_default_dtype()
    # mace builds buffers in the default dtype (ScaleShiftBlock, r_max), as its trainer does.
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        torch.manual_seed(recipe.seed)
        e0s = standin_e0s(recipe.atomic_numbers)
        atomic_energies = np.array(
            [[e0s[z] + offset for z in recipe.atomic_numbers] for offset in recipe.head_e0_offsets]
        )
        model = modules.ScaleShiftMACE(
            r_max=recipe.r_max,
            num_bessel=recipe.num_bessel,
            num_polynomial_cutoff=recipe.num_polynomial_cutoff,
            max_ell=recipe.max_ell,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes[
                "RealAgnosticResidualInteractionBlock"
            ],
            num_interactions=recipe.num_interactions,
            num_elements=len(recipe.atomic_numbers),
            hidden_irreps=o3.Irreps(recipe.hidden_irreps),
            MLP_irreps=o3.Irreps(recipe.mlp_irreps),
            atomic_energies=atomic_energies if len(recipe.heads) > 1 else atomic_energies[0],
            avg_num_neighbors=recipe.avg_num_neighbors,
            atomic_numbers=list(recipe.atomic_numbers),
            correlation=recipe.correlation,
            gate=modules.gate_dict["silu"],
            radial_MLP=list(recipe.radial_mlp),
            heads=list(recipe.heads),
            # mace annotates these as one float, but takes one per head as a list (as it does for
            # atomic_energies).
            atomic_inter_scale=list(recipe.scales) if len(recipe.heads) > 1 else recipe.scales[0],  # type: ignore[arg-type]
            atomic_inter_shift=list(recipe.shifts) if len(recipe.heads) > 1 else recipe.shifts[0],  # type: ignore[arg-type]
        )
    finally:
        torch.set_default_dtype(previous)
    return model.to(getattr(torch, dtype)).eval()


def ensure_standin(registry: FoundationRegistry, recipe: StandinRecipe, dtype: Dtype) -> str:
    """The registry name of the stand-in, building it into the models folder and converting it
    to its safe form on first use."""
    name = recipe.registry_name(dtype)
    target = registry.models_dir / f"{name}.model"
    if not registry.folder.holds(name):
        registry.models_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix="mlft-standin-", dir=registry.models_dir
        ) as scratch:
            built = Path(scratch) / f"{name}.model"
            torch.save(build_standin(recipe, dtype), built)
            pin_model_file(built)
            # The pin first, then the file: a model never exists in the folder without its pin.
            pin_path(built).replace(pin_path(target))
            built.replace(target)
    registry.resolve(name)  # converted in the sandbox once; later calls find the safe form
    return name
