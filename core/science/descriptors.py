"""Structure descriptors from a MACE model itself: the per-structure mean of its invariant node
features, computed many structures per forward pass.

The features are the ones mace's `MACECalculator.get_descriptors(invariants_only=True)` returns
per atom (the scalar channels of every interaction layer); averaging over atoms makes structures
of any size comparable in one space.
"""

from collections.abc import Sequence

import ase
import numpy as np
import torch
from mace.modules.utils import extract_invariant
from mace.tools.scatter import scatter_mean

from core.registry import mace_model
from core.science.inference import _batches, _inference_model


def structure_descriptors(
    model: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    *,
    batch_size: int = 32,
    device: str = "cpu",
) -> np.ndarray:
    """(n_configs, n_features) float64: mean invariant node features of each configuration."""
    inference = _inference_model(model, device)
    layers = mace_model.interaction_count(model)
    # Imported here, after mace: e3nn loads its constants with torch.load, which needs the
    # weights_only default that importing mace sets.
    from e3nn import o3

    irreps_out = o3.Irreps(str(model.get_submodule("products.0.linear").irreps_out))
    l_max = irreps_out.lmax
    invariant_features = irreps_out.dim // (l_max + 1) ** 2
    rows: list[np.ndarray] = []
    for batch in _batches(model, configs, batch_size):
        batch = batch.to(device)
        with torch.no_grad():
            output = inference(batch.to_dict(), training=False, compute_force=False)
        invariants = extract_invariant(
            output["node_feats"], num_layers=layers, num_features=invariant_features, l_max=l_max
        )
        means = scatter_mean(invariants, batch.batch, dim=0, dim_size=batch.num_graphs)
        rows.append(means.detach().cpu().numpy().astype(np.float64))
    if not rows:
        return np.zeros((0, invariant_features * layers))
    return np.concatenate(rows)
