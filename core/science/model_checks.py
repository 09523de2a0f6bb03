"""What a strategy must mean, checked on the model each job delivers.

Frozen weights stay bit-identical to the foundation's; a LoRA model saved merged predicts what the
unmerged adapters predicted; a replay model is delivered as its target head alone.
"""

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ase
import numpy as np
import torch

from core.errors import TrainingFailedError
from core.registry.foundation_heads import keep_head
from core.registry.foundations import load_own_model
from core.science.inference import predict
from core.science.spec import JobSpec, freeze_level_of, lora_of
from core.science.strategy_table import traits_of

TARGET_HEAD = "Default"  # mace's name for the head trained on the user's data
# Parameter name prefixes mace freezes at each --freeze level (mace/tools/finetuning_utils).
FROZEN_PREFIXES = {
    5: ("node_embedding.", "interactions."),
    6: ("node_embedding.", "interactions.", "products."),
}
# Merged LoRA weights must reproduce the adapters' predictions to numerical precision.
LORA_MERGE_TOLERANCE_EV = 1e-6
LORA_CHECK_CONFIGS = 20


def target_head(model: torch.nn.Module) -> torch.nn.Module:
    """A single-head copy holding only the target head, ready for an ASE calculator."""
    return keep_head(model, TARGET_HEAD)


def changed_frozen_parameters(
    trained: torch.nn.Module, foundation: torch.nn.Module, level: int
) -> list[str]:
    """Names of parameters that mace should have frozen but that differ from the foundation."""
    reference = dict(foundation.named_parameters())
    changed = []
    for name, parameter in trained.named_parameters():
        if not name.startswith(FROZEN_PREFIXES[level]):
            continue
        before = reference.get(name)
        if before is None or not torch.equal(parameter.detach().cpu(), before.detach().cpu()):
            changed.append(name)
    return changed


def unmerged_lora_model(
    merged: torch.nn.Module, checkpoint: Path, rank: int, alpha: float
) -> torch.nn.Module:
    """The model with its LoRA adapters as trained, rebuilt from mace's newest checkpoint."""
    from mace.modules.lora import inject_LoRAs

    # mace annotates alpha as int; it only scales the adapters by alpha / rank.
    model: torch.nn.Module = inject_LoRAs(
        copy.deepcopy(merged),
        rank=rank,
        alpha=alpha,  # type: ignore[arg-type]
    )
    state = load_own_model(checkpoint)["model"]
    model.load_state_dict(state, strict=True)
    return model


def max_energy_difference(
    first: torch.nn.Module, second: torch.nn.Module, configs: Sequence[ase.Atoms]
) -> float:
    energies_first = [p.energy for p in predict(first, configs, forces=False)]
    energies_second = [p.energy for p in predict(second, configs, forces=False)]
    return float(np.max(np.abs(np.subtract(energies_first, energies_second))))


def newest_checkpoint(folder: Path) -> Path:
    checkpoints = sorted(
        folder.glob("*_epoch-*.pt"), key=lambda path: int(path.stem.rsplit("-", 1)[1])
    )
    if not checkpoints:
        raise FileNotFoundError(f"no mace checkpoint in {folder}")
    return checkpoints[-1]


def trained_parameters(
    spec: JobSpec, model: torch.nn.Module
) -> tuple[torch.nn.Module, Callable[[str], bool]]:
    """The module the strategy trains and which of its parameter names train, by the strategy's
    trainable rule (core.science.strategy_table). LoRA injects its adapters into `model` itself:
    pass a copy."""
    rule = traits_of(spec.strategy.name).trainable
    lora = lora_of(spec.strategy)
    if rule == "lora_adapters" and lora is not None:
        from mace.modules.lora import inject_LoRAs

        # mace annotates alpha as int; it is a float scale (LoRA's alpha / rank).
        adapted = inject_LoRAs(model, rank=lora[0], alpha=lora[1])  # type: ignore[arg-type]
        return adapted, lambda name: "lora_" in name
    level = freeze_level_of(spec.strategy)
    if rule == "unfrozen" and level is not None:
        frozen = FROZEN_PREFIXES[level]
        return model, lambda name: not name.startswith(frozen)
    return model, lambda name: True


def trainable_parameters(spec: JobSpec, model: torch.nn.Module) -> dict[str, float]:
    """How much of the model the strategy trained: the study's capacity-control axis."""
    total = sum(parameter.numel() for parameter in model.parameters())
    copied = copy.deepcopy(model) if lora_of(spec.strategy) is not None else model
    module, trains = trained_parameters(spec, copied)
    trainable = sum(p.numel() for name, p in module.named_parameters() if trains(name))
    return {"trainable": trainable, "total": total, "fraction": trainable / total}


def strategy_checks(
    spec: JobSpec,
    full: torch.nn.Module,
    foundation_model: torch.nn.Module | None,
    molecules: list[ase.Atoms],
    work_dir: Path,
) -> dict[str, Any]:
    """The checks of the strategy's meaning on the trained model (frozen weights unchanged, merged
    LoRA equal to its adapters), recorded on the job; a failed one fails the job."""
    checks: dict[str, Any] = {"trainable_parameters": trainable_parameters(spec, full)}
    level = freeze_level_of(spec.strategy)
    if level is not None:
        assert foundation_model is not None
        changed = changed_frozen_parameters(full, foundation_model, level)
        if changed:
            raise TrainingFailedError(
                f"--freeze={level} left parameters that should be frozen changed: "
                f"{', '.join(changed[:5])}"
            )
        frozen = [
            name for name, _ in full.named_parameters() if name.startswith(FROZEN_PREFIXES[level])
        ]
        checks["frozen_parameters"] = {"level": level, "count": len(frozen), "unchanged": True}
    lora = lora_of(spec.strategy)
    if lora is not None:
        unmerged = unmerged_lora_model(full, newest_checkpoint(work_dir / "checkpoints"), *lora)
        difference = max_energy_difference(full, unmerged, molecules[:LORA_CHECK_CONFIGS])
        if difference > LORA_MERGE_TOLERANCE_EV:
            raise TrainingFailedError(
                f"the merged LoRA model differs from the adapters by {difference:.3g} eV"
            )
        checks["lora_merge_max_energy_difference_ev"] = difference
    return checks
