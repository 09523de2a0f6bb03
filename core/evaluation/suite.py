"""The evaluation stage: every measurement of one model, as the report's sections."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ase
import torch

from core.datasets import labels_of
from core.evaluation.accuracy import accuracy
from core.spec import EvaluationSettings

StageCallback = Callable[[str], None]


@dataclass(frozen=True)
class EvaluationData:
    test: list[ase.Atoms] | None
    replay: list[ase.Atoms] | None = None
    reference: list[ase.Atoms] | None = None


def evaluate_model(
    model: torch.nn.Module,
    data: EvaluationData,
    settings: EvaluationSettings,
    *,
    foundation: torch.nn.Module | None = None,
    on_stage: StageCallback | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    stage = on_stage or (lambda _name: None)
    report: dict[str, Any] = {}
    if data.test:
        stage("evaluating accuracy")
        report["accuracy"] = {"test": accuracy(model, data.test, device=device).to_dict()}
    # Unlabelled replay structures (pseudolabel replay) give no error to compare.
    if data.replay and foundation is not None and _labelled(data.replay):
        stage("evaluating forgetting")
        report["forgetting"] = _forgetting(model, foundation, data.replay, device)
    return report


def _labelled(configs: list[ase.Atoms]) -> bool:
    return all(labels_of(atoms).energy is not None for atoms in configs)


def _forgetting(
    model: torch.nn.Module, foundation: torch.nn.Module, replay: list[ase.Atoms], device: str
) -> dict[str, Any]:
    before = accuracy(foundation, replay, device=device).to_dict()
    after = accuracy(model, replay, device=device).to_dict()
    ratio = None
    if before["forces_rmse_mev_per_a"] and after["forces_rmse_mev_per_a"] is not None:
        ratio = after["forces_rmse_mev_per_a"] / before["forces_rmse_mev_per_a"]
    return {"foundation": before, "finetuned": after, "force_rmse_ratio": ratio}
