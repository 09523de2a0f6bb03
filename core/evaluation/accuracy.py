"""Pointwise accuracy of a model on a dataset (science.md §3), in the units people read.

Energy errors in meV/atom, forces in meV/Å, stress in meV/Å³ (all nine components, as mace-torch
reports it), overall and per config_type, plus reference-vs-predicted data for parity plots.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ase
import numpy as np
import torch

from core.data.label_values import labels_of
from core.science.inference import predict

DEFAULT_CONFIG_TYPE = "default"
# Enough for a readable scatter plot; a replay set has millions of force components.
MAX_PARITY_POINTS = 5000


@dataclass(frozen=True)
class ErrorMetrics:
    """RMSE and MAE of each label; None where no configuration has that label."""

    n_configs: int
    energy_rmse_mev_per_atom: float | None
    energy_mae_mev_per_atom: float | None
    forces_rmse_mev_per_a: float | None
    forces_mae_mev_per_a: float | None
    stress_rmse_mev_per_a3: float | None
    stress_mae_mev_per_a3: float | None
    # The mean energy error, and the RMSE once it is removed: a set of relative energies (a
    # dihedral scan, a reaction path) is judged by the second, a constant offset drops out.
    energy_mean_error_mev_per_atom: float | None
    energy_rmse_without_offset_mev_per_atom: float | None
    # RMS of the labels themselves: the RMSE of a model predicting zero force / zero stress.
    forces_label_rms_mev_per_a: float | None
    stress_label_rms_mev_per_a3: float | None
    # Labels on which the model is worse than predicting zero (RMSE above the labels' RMS).
    worse_than_zero: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ParityData:
    """Reference and predicted values, evenly thinned to at most MAX_PARITY_POINTS each.

    Energies per atom are relative to the mean reference of each configuration's composition:
    absolute energies span eV to keV per atom across compositions and hide meV errors."""

    energy_reference_ev_per_atom: list[float]
    energy_predicted_ev_per_atom: list[float]
    forces_reference_ev_per_a: list[float]  # Cartesian components
    forces_predicted_ev_per_a: list[float]
    stress_reference_ev_per_a3: list[float] = field(default_factory=list)  # 3x3 components
    stress_predicted_ev_per_a3: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class AccuracyMetrics(ErrorMetrics):
    """Errors over the whole dataset (the inherited fields), per config_type, and parity data."""

    per_config_type: dict[str, ErrorMetrics]
    parity: ParityData


@dataclass(frozen=True)
class _Values:
    reference: np.ndarray
    predicted: np.ndarray


@dataclass(frozen=True)
class _Compared:
    """One configuration's labels next to the model's values; None where it has no label."""

    config_type: str
    composition: str  # reduced formula
    energy: _Values | None  # eV/atom, one value
    forces: _Values | None  # eV/Å, flattened
    stress: _Values | None  # eV/Å³, flattened 3x3


def accuracy(
    model: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    *,
    batch_size: int = 32,
    device: str = "cpu",
    max_parity_points: int = MAX_PARITY_POINTS,
) -> AccuracyMetrics:
    """Errors of `model` against the labels of `configs` (read with
    core.data.label_values.labels_of)."""
    compared = _compare(model, configs, batch_size, device)
    by_type: dict[str, list[_Compared]] = defaultdict(list)
    for item in compared:
        by_type[item.config_type].append(item)
    return AccuracyMetrics(
        **asdict(_error_metrics(compared)),
        per_config_type={name: _error_metrics(items) for name, items in sorted(by_type.items())},
        parity=_parity(compared, max_parity_points),
    )


def _compare(
    model: torch.nn.Module, configs: Sequence[ase.Atoms], batch_size: int, device: str
) -> list[_Compared]:
    labels = [labels_of(atoms) for atoms in configs]
    with_forces = any(label.forces is not None for label in labels)
    # Stress in the same batched pass (predict gives it for fully periodic cells only).
    with_stress = any(
        label.stress is not None and bool(atoms.pbc.all())
        for atoms, label in zip(configs, labels, strict=True)
    )
    predictions = predict(
        model,
        configs,
        batch_size=batch_size,
        device=device,
        forces=with_forces,
        stress=with_stress,
    )
    return [
        _Compared(
            config_type=str(atoms.info.get("config_type", DEFAULT_CONFIG_TYPE)),
            composition=str(atoms.symbols.formula.reduce()[0]),
            energy=_values(label.energy, prediction.energy, scale=1 / len(atoms)),
            forces=_values(label.forces, prediction.forces),
            stress=_values(label.stress, prediction.stress),
        )
        for atoms, label, prediction in zip(configs, labels, predictions, strict=True)
    ]


def _values(
    reference: float | np.ndarray | None, predicted: float | np.ndarray | None, scale: float = 1.0
) -> _Values | None:
    if reference is None or predicted is None:
        return None
    return _Values(np.ravel(reference) * scale, np.ravel(predicted) * scale)


def _error_metrics(compared: list[_Compared]) -> ErrorMetrics:
    energy = _errors_mev([item.energy for item in compared])
    forces = _errors_mev([item.forces for item in compared])
    stress = _errors_mev([item.stress for item in compared])
    forces_rms = _rmse(_references_mev([item.forces for item in compared]))
    stress_rms = _rmse(_references_mev([item.stress for item in compared]))
    return ErrorMetrics(
        n_configs=len(compared),
        energy_rmse_mev_per_atom=_rmse(energy),
        energy_mae_mev_per_atom=_mae(energy),
        forces_rmse_mev_per_a=_rmse(forces),
        forces_mae_mev_per_a=_mae(forces),
        stress_rmse_mev_per_a3=_rmse(stress),
        stress_mae_mev_per_a3=_mae(stress),
        energy_mean_error_mev_per_atom=float(energy.mean()) if energy.size else None,
        energy_rmse_without_offset_mev_per_atom=_rmse(energy - energy.mean())
        if energy.size
        else None,
        forces_label_rms_mev_per_a=forces_rms,
        stress_label_rms_mev_per_a3=stress_rms,
        worse_than_zero=[
            label
            for label, rmse, rms in (
                ("forces", _rmse(forces), forces_rms),
                ("stress", _rmse(stress), stress_rms),
            )
            if rmse is not None and rms is not None and rmse > rms
        ],
    )


def _references_mev(values: list[_Values | None]) -> np.ndarray:
    references = [item.reference for item in values if item is not None]
    return np.concatenate(references) * 1e3 if references else np.empty(0)


def _errors_mev(values: list[_Values | None]) -> np.ndarray:
    """Predicted minus reference, in meV units, over every configuration that has the label."""
    errors = [item.predicted - item.reference for item in values if item is not None]
    return np.concatenate(errors) * 1e3 if errors else np.empty(0)


def _rmse(errors: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean(errors**2))) if errors.size else None


def _mae(errors: np.ndarray) -> float | None:
    return float(np.mean(np.abs(errors))) if errors.size else None


def _parity(compared: list[_Compared], max_points: int) -> ParityData:
    energies = _relative_to_composition([item for item in compared if item.energy is not None])
    forces = [item.forces for item in compared if item.forces is not None]
    stress = [item.stress for item in compared if item.stress is not None]
    return ParityData(
        energy_reference_ev_per_atom=_thinned([item.reference for item in energies], max_points),
        energy_predicted_ev_per_atom=_thinned([item.predicted for item in energies], max_points),
        forces_reference_ev_per_a=_thinned([item.reference for item in forces], max_points),
        forces_predicted_ev_per_a=_thinned([item.predicted for item in forces], max_points),
        stress_reference_ev_per_a3=_thinned([item.reference for item in stress], max_points),
        stress_predicted_ev_per_a3=_thinned([item.predicted for item in stress], max_points),
    )


def _relative_to_composition(compared: list[_Compared]) -> list[_Values]:
    """Per-atom energies minus the mean reference of their composition, reference and
    predicted alike, so the parity plot shows the errors rather than the compositions."""
    by_composition: dict[str, list[float]] = defaultdict(list)
    for item in compared:
        assert item.energy is not None
        by_composition[item.composition].append(float(item.energy.reference[0]))
    means = {name: float(np.mean(values)) for name, values in by_composition.items()}
    relative = []
    for item in compared:
        assert item.energy is not None
        mean = means[item.composition]
        relative.append(_Values(item.energy.reference - mean, item.energy.predicted - mean))
    return relative


def _thinned(arrays: list[np.ndarray], max_points: int) -> list[float]:
    values = np.concatenate(arrays) if arrays else np.empty(0)
    # Evenly spaced indices, not a random sample: the same dataset gives the same plot.
    if values.size > max_points:
        values = values[np.linspace(0, values.size - 1, max_points).round().astype(int)]
    return values.tolist()
