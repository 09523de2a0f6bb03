"""Stand-in foundation families for the tests (core.registry.standin_foundations), and what a lone
atom's energy must be for them, computed from mace's modules without the model's forward pass."""

from pathlib import Path

import torch
from ase.data import atomic_numbers

from core.registry.foundations import FoundationRegistry
from core.registry.standin_foundations import RECIPES, Dtype, ensure_standin


def standin_name(models_dir: Path, family: str, dtype: Dtype) -> str:
    """Registry name of the stand-in, built and registered (pinned) on first use, then cached."""
    return ensure_standin(FoundationRegistry(models_dir), RECIPES[family], dtype)


def lone_atom_energy_by_formula(model: torch.nn.Module, symbol: str) -> float:
    """E0(Z) + scale · Σ_l readout_l(h_l(Z)) + shift for a single-head residual ScaleShiftMACE.

    With no neighbour every message is zero, so layer l's features are its product block applied
    to a zero message plus the skip connection h_l = product_l(0, sc_l), sc_l =
    skip_tp_l(h_{l-1}, one-hot(Z)), starting from the element embedding h_0.
    """
    index = [int(z) for z in model.atomic_numbers].index(atomic_numbers[symbol])
    dtype = next(model.parameters()).dtype
    attrs = torch.zeros(1, len(model.atomic_numbers), dtype=dtype)
    attrs[0, index] = 1.0
    head = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        features = model.node_embedding(attrs)
        layers = []
        for interaction, product in zip(model.interactions, model.products, strict=True):
            skip = interaction.skip_tp(features, attrs)
            message = interaction.reshape(torch.zeros(1, interaction.irreps_out.dim, dtype=dtype))
            features = product(node_feats=message, sc=skip, node_attrs=attrs)
            layers.append(features)
        readouts = sum(
            float(readout(layers[i], head)[0, 0]) for i, readout in enumerate(model.readouts)
        )
        e0 = float(model.atomic_energies_fn.atomic_energies.reshape(-1)[index])
        scale = float(model.scale_shift.scale.reshape(-1)[0])
        shift = float(model.scale_shift.shift.reshape(-1)[0])
    return e0 + scale * readouts + shift
