"""What a job hands to mace-torch: its data files, the foundation copy carrying the chosen E0s (or
the replay file and foundation pickle of multihead fine-tuning), the loss, and a batch size its
largest configurations fit."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase
import torch
from ase.data import chemical_symbols

from core.data.datasets import read_configurations, trained_stress_count, write_mace_extxyz
from core.errors import InvalidSpecError
from core.registry import mace_model
from core.registry.foundations import FoundationModel, write_mace_foundation
from core.science import e0s as e0_methods
from core.science.batch_limits import with_batch_size
from core.science.cache import PredictionCache
from core.science.e0s import E0Fit
from core.science.inference import neighbourhood
from core.science.pseudolabels import pseudolabelled
from core.science.replay import ReplayFile, prepare_replay_file
from core.science.spec import JobSpec, ScratchStrategy, replay_of, uses_pseudolabels
from core.science.strategies import TrainingInputs, training_loss
from core.workflows.training_records import JobFiles

logger = logging.getLogger(__name__)

# mace-torch's training step (forces in the loss, so a double backward pass) holds about 200 kB
# per edge at MACE-MP-0-small size in float64, against a few kB in a prediction: a default batch
# is kept to this share of MLFT_MAX_EDGES_PER_BATCH.
TRAINING_EDGE_SHARE = 0.5


@dataclass(frozen=True)
class PreparedInputs:
    inputs: TrainingInputs
    replay: ReplayFile | None
    # The E0s with those the model keeps from its foundation (issue 25).
    fit: E0Fit


def prepare_inputs(
    spec: JobSpec,
    files: JobFiles,
    foundation: FoundationModel | None,
    foundation_model: torch.nn.Module | None,
    fit: E0Fit,
    molecules: list[ase.Atoms],
    valid: list[ase.Atoms] | None,
    work_dir: Path,
    device: str,
    cache: PredictionCache | None,
) -> PreparedInputs:
    train_file = work_dir / "train.extxyz"
    write_mace_extxyz(molecules, train_file)
    valid_file = None
    if valid:
        valid_file = work_dir / "valid.extxyz"
        write_mace_extxyz(valid, valid_file)
    elif files.valid is not None:
        valid_file = work_dir / "valid.extxyz"
        write_mace_extxyz(read_configurations(files.valid), valid_file)
    if isinstance(spec.strategy, ScratchStrategy):
        inputs = TrainingInputs(work_dir, train_file, valid_file, None, fit.e0s, device)
        return PreparedInputs(inputs, None, fit)
    assert foundation is not None and foundation_model is not None
    replay = replay_of(spec.strategy)
    if replay is None:
        fit = e0_methods.for_model_elements(fit, foundation_model, spec.elements)
        copy_file = work_dir / "foundation_with_e0s.model"
        torch.save(e0_methods.with_e0s(foundation_model, fit.e0s), copy_file)
        inputs = TrainingInputs(work_dir, train_file, valid_file, copy_file, fit.e0s, device)
        return PreparedInputs(inputs, None, fit)
    if files.replay is None:
        raise InvalidSpecError("a replay strategy needs its replay dataset")
    require_elements_known(foundation_model, read_configurations(files.replay), "replay data")
    replay_file = prepare_replay_file(
        replay,
        files.replay,
        work_dir / "replay.extxyz",
        pseudolabels=_pseudolabeller(spec, foundation, foundation_model, cache, device),
        foundation=foundation,
        seed=spec.hyperparameters.seed,
    )
    # The replay head takes its E0s from the foundation itself; the target head from --E0s,
    # given for every element the model keeps (mace pads missing ones with 0 eV).
    fit = e0_methods.for_model_elements(
        fit, foundation_model, spec.elements, replay_elements=replay_file.elements
    )
    e0s = fit.model_e0s()
    # mace reads the foundation itself for multihead fine-tuning: it gets a pickle this service
    # writes from the model rebuilt from its safe form, never a file someone uploaded.
    foundation_file = write_mace_foundation(foundation_model, work_dir / "foundation.model")
    inputs = TrainingInputs(
        work_dir, train_file, valid_file, foundation_file, e0s, device, replay_file.path
    )
    return PreparedInputs(inputs, replay_file, fit)


def _pseudolabeller(
    spec: JobSpec,
    foundation: FoundationModel,
    foundation_model: torch.nn.Module,
    cache: PredictionCache | None,
    device: str,
) -> Callable[[list[ase.Atoms]], list[ase.Atoms]] | None:
    if not uses_pseudolabels(spec.strategy):
        return None

    def label(configs: list[ase.Atoms]) -> list[ase.Atoms]:
        # Computed once per foundation and structures, shared by every job (and sweep) replaying
        # them; mace's own --pseudolabel_replay would relabel them in each job.
        return pseudolabelled(
            configs, foundation_model, foundation.sha256, cache=cache, device=device
        )

    return label


def require_elements_known(model: torch.nn.Module, configs: list[ase.Atoms], role: str) -> None:
    known = set(mace_model.atomic_numbers(model))
    numbers = {int(z) for atoms in configs for z in atoms.numbers}
    missing = [chemical_symbols[z] for z in sorted(numbers - known)]
    if missing:
        raise InvalidSpecError(
            f"the foundation model does not know element(s) {', '.join(missing)} of the "
            f"{role}; fine-tune a foundation that covers them or train from scratch"
        )


def loss_record(spec: JobSpec, molecules: list[ase.Atoms]) -> dict[str, Any]:
    """Which loss the job trains with and on how many configurations' stress: the job says it."""
    with_stress = trained_stress_count(molecules)
    loss = training_loss(spec, with_stress > 0)
    return {
        "loss": loss,
        "energy_weight": spec.hyperparameters.energy_weight,
        "forces_weight": spec.hyperparameters.forces_weight,
        "stress_weight": spec.hyperparameters.stress_weight if loss == "stress" else None,
        "configs_with_stress": with_stress,
        "periodic_configs": sum(bool(atoms.pbc.any()) for atoms in molecules),
        "n_configs": len(molecules),
    }


def batch_size_for_edges(
    spec: JobSpec,
    molecules: list[ase.Atoms],
    model: torch.nn.Module | None,
    max_edges: int,
) -> tuple[JobSpec, list[str]]:
    """The spec with its batch size lowered so that a batch of its largest configurations stays
    within TRAINING_EDGE_SHARE of the edge budget, with a note saying so: the worker's memory is
    bounded by the setting, whatever the data (a single configuration is still trained on)."""
    hyper = spec.hyperparameters
    if not molecules:
        return spec, []
    if isinstance(spec.strategy, ScratchStrategy):
        r_max = spec.strategy.architecture.r_max
    elif model is not None:
        r_max = mace_model.cutoff(model)
    else:
        return spec, []
    largest = max(neighbourhood(atoms, r_max).n_edges + len(atoms) for atoms in molecules)
    fitting = max(1, int(TRAINING_EDGE_SHARE * max_edges) // largest)
    if fitting >= hyper.batch_size:
        return spec, []
    lowered = with_batch_size(spec, fitting)
    note = (
        f"batch size {fitting} instead of {hyper.batch_size}: the largest training "
        f"configuration has {largest} edges within r_max {r_max:g} Å, and training memory grows "
        f"with edges; a batch holds at most {int(TRAINING_EDGE_SHARE * max_edges)} "
        f"(half of MLFT_MAX_EDGES_PER_BATCH={max_edges}, which a worker with more memory may "
        "raise)"
    )
    logger.info(note)
    return lowered, [note]
