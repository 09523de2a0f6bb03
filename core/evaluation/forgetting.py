"""Forgetting (science.md §3): how much a fine-tuned model lost on pretraining-like data.

The study's measure is the fine-tuned model's force RMSE on pretraining-like data over the
foundation's own force RMSE there (SPICE: naive ~4000×, LoRA rank 4 ~200×, multihead ~1.0×).

Replay sets may come without labels (the foundation pseudolabels them for training). Then the
foundation's predictions are the reference: the fine-tuned model's errors measure how far it
moved away from the foundation, and there is no ratio, the foundation's own error being zero.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import ase
import numpy as np
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from core.data.label_values import labels_of
from core.evaluation.accuracy import AccuracyMetrics, accuracy
from core.science.inference import predict

Reference = Literal["dataset", "foundation"]


@dataclass(frozen=True)
class OffsetFreeEnergies:
    """Energy RMSEs (meV/atom) after removing each model's least-squares per-element offset
    from its errors. A fine-tuned model carries the E0s of the new reference, so its raw energy
    error on pretraining-like data is mostly that E0 shift (a 44× "ratio" of nothing forgotten);
    what remains after the offset is what it forgot."""

    foundation_mev_per_atom: float | None
    fine_tuned_mev_per_atom: float | None
    ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Forgetting:
    reference: Reference  # where the labels compared against came from
    foundation: AccuracyMetrics | None  # None when the reference is the foundation itself
    fine_tuned: AccuracyMetrics
    forces_rmse_ratio: float | None  # fine-tuned over foundation force RMSE
    energy_offset_removed: OffsetFreeEnergies | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "foundation": None if self.foundation is None else self.foundation.to_dict(),
            "fine_tuned": self.fine_tuned.to_dict(),
            "forces_rmse_ratio": self.forces_rmse_ratio,
            "energy_offset_removed": (
                None if self.energy_offset_removed is None else self.energy_offset_removed.to_dict()
            ),
        }


def forgetting(
    foundation: torch.nn.Module,
    fine_tuned: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    *,
    batch_size: int = 32,
    device: str = "cpu",
) -> Forgetting:
    """Errors of both models on pretraining-like `configs` and the ratio of their force RMSEs."""
    if not any(_is_labelled(atoms) for atoms in configs):
        pseudolabelled = _labelled_by(foundation, configs, batch_size, device)
        return Forgetting(
            reference="foundation",
            foundation=None,
            fine_tuned=accuracy(fine_tuned, pseudolabelled, batch_size=batch_size, device=device),
            forces_rmse_ratio=None,
        )
    before = accuracy(foundation, configs, batch_size=batch_size, device=device)
    after = accuracy(fine_tuned, configs, batch_size=batch_size, device=device)
    return Forgetting(
        reference="dataset",
        foundation=before,
        fine_tuned=after,
        forces_rmse_ratio=_ratio(after.forces_rmse_mev_per_a, before.forces_rmse_mev_per_a),
        energy_offset_removed=_offset_free(foundation, fine_tuned, configs, batch_size, device),
    )


def _offset_free(
    foundation: torch.nn.Module,
    fine_tuned: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    batch_size: int,
    device: str,
) -> OffsetFreeEnergies | None:
    labelled = [atoms for atoms in configs if labels_of(atoms).energy is not None]
    if not labelled:
        return None
    reference = np.array([labels_of(atoms).energy for atoms in labelled], dtype=float)
    errors = [
        offset_free_energy_rmse(labelled, _energies(model, labelled, batch_size, device), reference)
        for model in (foundation, fine_tuned)
    ]
    return OffsetFreeEnergies(errors[0], errors[1], _ratio(errors[1], errors[0]))


def offset_free_energy_rmse(
    configs: Sequence[ase.Atoms], predicted: np.ndarray, reference: np.ndarray
) -> float:
    """Per-atom energy RMSE (meV/atom) once the least-squares per-element offset
    Σ_Z n_iZ δ_Z of the errors is removed (science.md §2: an E0 shift is no model error)."""
    elements = sorted({int(z) for atoms in configs for z in atoms.numbers})
    composition = np.array(
        [[np.count_nonzero(atoms.numbers == z) for z in elements] for atoms in configs], float
    )
    residual = np.asarray(predicted, float) - np.asarray(reference, float)
    delta, *_ = np.linalg.lstsq(composition, residual, rcond=None)
    remaining = (residual - composition @ delta) / composition.sum(axis=1)
    return float(np.sqrt(np.mean(remaining**2)) * 1000.0)


def _energies(
    model: torch.nn.Module, configs: Sequence[ase.Atoms], batch_size: int, device: str
) -> np.ndarray:
    predictions = predict(model, configs, batch_size=batch_size, device=device, forces=False)
    return np.array([prediction.energy for prediction in predictions], dtype=float)


def _is_labelled(atoms: ase.Atoms) -> bool:
    labels = labels_of(atoms)
    return labels.energy is not None or labels.forces is not None


def _labelled_by(
    model: torch.nn.Module, configs: Sequence[ase.Atoms], batch_size: int, device: str
) -> list[ase.Atoms]:
    predictions = predict(model, configs, batch_size=batch_size, device=device)
    labelled = []
    for atoms, prediction in zip(configs, predictions, strict=True):
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, energy=prediction.energy, forces=prediction.forces)
        labelled.append(copy)
    return labelled


# A foundation this close to the labels is being compared with its own predictions (a replay set
# it labelled itself), where a ratio means nothing.
OWN_LABELS_MEV_PER_A = 1e-6


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator < OWN_LABELS_MEV_PER_A:
        return None
    return numerator / denominator
