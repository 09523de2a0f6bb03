"""Which E0s a job trains with, by the method its spec names, and what the job warns about them.

core.science.e0s holds the methods themselves; this module picks one for a spec and says, in
sentences a researcher can act on, when the chosen E0s leave the foundation's energies far off.
"""

from dataclasses import replace

import ase
import numpy as np
import torch

from core.data.label_values import labels_of
from core.errors import InvalidSpecError
from core.science import e0s as e0_methods
from core.science.e0s import E0_MISMATCH_MEV_PER_ATOM, E0Fit
from core.science.spec import JobSpec


def label_energies(configs: list[ase.Atoms]) -> np.ndarray:
    """The configurations' energy labels, in eV per configuration."""
    return np.array([labels_of(atoms).energy for atoms in configs], dtype=float)


def choose_e0s(
    spec: JobSpec,
    foundation_model: torch.nn.Module | None,
    configs: list[ase.Atoms],
    isolated_atoms: list[ase.Atoms],
    *,
    predicted: np.ndarray | None = None,
) -> E0Fit:
    energies = label_energies(configs)
    elements = sorted({symbol for atoms in configs for symbol in atoms.get_chemical_symbols()})
    method = spec.e0s
    if isinstance(method, dict):
        return e0_methods.explicit_e0s(
            method, elements, model=foundation_model, configs=configs, energies=energies
        )
    if method == "isolated_atoms":
        fit = e0_methods.isolated_atom_e0s(
            isolated_atoms,
            label_energies(isolated_atoms),
            model=foundation_model,
            training=configs,
            training_energies=energies,
        )
        missing = sorted(set(elements) - set(fit.e0s))
        if missing:
            raise InvalidSpecError(
                f"e0s='isolated_atoms' needs a single-atom configuration of {', '.join(missing)} "
                "in the training data or in isolated_atoms_dataset"
            )
        # Isolated atoms of elements the data lack would give mace E0s for absent elements.
        return replace(fit, e0s={symbol: fit.e0s[symbol] for symbol in elements})
    if method == "average":
        return e0_methods.average_e0s(configs, energies, model=foundation_model)
    if foundation_model is None:
        raise InvalidSpecError(f"e0s={method!r} needs a foundation model")
    if method == "foundation":
        return e0_methods.foundation_e0s(
            foundation_model, elements, configs=configs, energies=energies
        )
    return e0_methods.estimate_e0s(foundation_model, configs, energies, predicted=predicted)


def e0_warnings(fit: E0Fit, spec: JobSpec) -> list[str]:
    notes = [f"E0s: {fit.note}"] if fit.note else []
    return notes + _e0_mismatch_warnings(fit, spec)


def _e0_mismatch_warnings(fit: E0Fit, spec: JobSpec) -> list[str]:
    before = fit.energy_rmse_before
    if before is None or before <= E0_MISMATCH_MEV_PER_ATOM:
        return []
    after = fit.energy_rmse_after
    if spec.e0s == "foundation":
        return [
            f"E0 mismatch: the foundation's energy error on the training data is {before:.0f} "
            f"meV/atom with its own E0s (above {E0_MISMATCH_MEV_PER_ATOM:.0f} meV/atom); the data "
            "likely come from another level of theory: use e0s='estimated' or isolated atoms"
        ]
    if after is not None and after <= E0_MISMATCH_MEV_PER_ATOM:
        return [
            f"E0 mismatch corrected: the foundation's energy error on the training data was "
            f"{before:.0f} meV/atom with its own E0s and is {after:.1f} meV/atom with the "
            f"chosen E0s ({fit.method})"
        ]
    still = "cannot be told" if after is None else f"is still {after:.0f} meV/atom"
    return [
        f"E0 mismatch not corrected: the foundation's energy error on the training data was "
        f"{before:.0f} meV/atom with its own E0s and {still} with the chosen E0s ({fit.method}), "
        f"above {E0_MISMATCH_MEV_PER_ATOM:.0f} meV/atom: use e0s='estimated' or isolated atoms "
        "at the data's level of theory"
    ]
