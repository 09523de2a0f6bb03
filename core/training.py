"""Run one fine-tuning job on local files: E0s, mace-torch training, E0 verification, test metrics.

Plain functions without database or queue, so tests call them directly; core.runner adds the job
row and the artifact store around them.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import ase
import numpy as np
import torch

from core import e0s as e0_methods
from core.datasets import labels_of, read_configurations, write_mace_extxyz
from core.e0s import E0Fit
from core.errors import InvalidSpecError
from core.evaluation import AccuracyMetrics, accuracy
from core.foundations import FoundationModel
from core.mace_process import run_mace_training
from core.spec import JobSpec, ScratchStrategy
from core.strategies import RUN_NAME, TrainingInputs, to_mace_argv

logger = logging.getLogger(__name__)


class Progress(Protocol):
    def stage(self, name: str) -> None: ...

    def epoch(self, entry: dict) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass(frozen=True)
class JobFiles:
    train: Path
    valid: Path | None = None
    test: Path | None = None
    isolated_atoms: Path | None = None


@dataclass(frozen=True)
class TrainingResult:
    model_path: Path
    e0_fit: E0Fit
    isolated_atom_energies: dict[str, float]
    test_metrics: AccuracyMetrics | None


def load_model(path: Path, device: str = "cpu") -> torch.nn.Module:
    # mace models are pickled modules; only registered foundations and our own outputs get here.
    return torch.load(path, map_location=device, weights_only=False)


def run_training(
    spec: JobSpec,
    files: JobFiles,
    foundation: FoundationModel | None,
    work_dir: Path,
    progress: Progress,
    *,
    device: str = "cpu",
) -> TrainingResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    progress.stage("preparing data")
    configs = read_configurations(files.train)
    molecules = [atoms for atoms in configs if len(atoms) > 1]
    if not molecules:
        raise InvalidSpecError("the training dataset holds only single atoms; nothing to train on")
    foundation_model = load_model(foundation.path, device) if foundation else None
    if foundation_model is not None and not isinstance(spec.strategy, ScratchStrategy):
        require_elements_known(foundation_model, configs)

    progress.stage("e0s")
    fit = choose_e0s(spec, foundation_model, molecules, _isolated_atoms(configs, files))
    logger.info("e0s chosen method=%s e0s=%s", fit.method, fit.e0s)

    train_file = work_dir / "train.extxyz"
    write_mace_extxyz(molecules, train_file)
    valid_file = None
    if files.valid is not None:
        valid_file = work_dir / "valid.extxyz"
        write_mace_extxyz(read_configurations(files.valid), valid_file)
    foundation_file = None
    if not isinstance(spec.strategy, ScratchStrategy):
        assert foundation_model is not None
        foundation_file = work_dir / "foundation_with_e0s.model"
        torch.save(e0_methods.with_e0s(foundation_model, fit.e0s), foundation_file)

    inputs = TrainingInputs(work_dir, train_file, valid_file, foundation_file, fit.e0s, device)
    progress.stage("training")
    run_mace_training(
        to_mace_argv(spec, inputs),
        results_file=work_dir / "results" / f"{RUN_NAME}_run-{spec.hyperparameters.seed}_train.txt",
        log_file=work_dir / "mace.log",
        on_epoch=progress.epoch,
        should_stop=progress.should_stop,
    )

    model_path = work_dir / "model" / f"{RUN_NAME}.model"
    model = load_model(model_path, device)
    progress.stage("verifying e0s")
    # science.md §5: mace can silently swap E0s; the delivered model must carry the chosen ones.
    isolated_energies = e0_methods.verify_model_e0s(
        model, fit.e0s, check_isolated_atoms=_lone_atoms_are_exact(spec, foundation_model)
    )

    metrics = None
    if files.test is not None:
        progress.stage("evaluating")
        metrics = accuracy(model, read_configurations(files.test), device=device)
    return TrainingResult(model_path, fit, isolated_energies, metrics)


def _lone_atoms_are_exact(spec: JobSpec, foundation_model: torch.nn.Module | None) -> bool:
    # A scratch MACE has no shift, so a lone atom's energy is its E0; a fine-tuned model keeps
    # whatever biases its foundation has on lone atoms.
    if isinstance(spec.strategy, ScratchStrategy) or foundation_model is None:
        return True
    return e0_methods.isolated_atoms_carry_e0s(foundation_model)


def require_elements_known(model: torch.nn.Module, configs: list[ase.Atoms]) -> None:
    known = {int(z) for z in model.atomic_numbers}
    missing = sorted(
        {atoms.symbols[i] for atoms in configs for i, z in enumerate(atoms.numbers)
         if int(z) not in known}
    )
    if missing:
        raise InvalidSpecError(
            f"the foundation model does not know element(s) {', '.join(missing)} of the "
            "training data; fine-tune a foundation that covers them or train from scratch"
        )


def _isolated_atoms(configs: list[ase.Atoms], files: JobFiles) -> list[ase.Atoms]:
    singles = [atoms for atoms in configs if len(atoms) == 1]
    if files.isolated_atoms is not None:
        singles += [atoms for atoms in read_configurations(files.isolated_atoms) if len(atoms) == 1]
    return singles


def _energies(configs: list[ase.Atoms]) -> np.ndarray:
    return np.array([labels_of(atoms).energy for atoms in configs], dtype=float)


def choose_e0s(
    spec: JobSpec,
    foundation_model: torch.nn.Module | None,
    configs: list[ase.Atoms],
    isolated_atoms: list[ase.Atoms],
) -> E0Fit:
    energies = _energies(configs)
    elements = sorted({symbol for atoms in configs for symbol in atoms.get_chemical_symbols()})
    method = spec.e0s
    if isinstance(method, dict):
        return e0_methods.explicit_e0s(
            method, elements, model=foundation_model, configs=configs, energies=energies
        )
    if method == "isolated_atoms":
        fit = e0_methods.isolated_atom_e0s(
            isolated_atoms, _energies(isolated_atoms), model=foundation_model
        )
        missing = sorted(set(elements) - set(fit.e0s))
        if missing:
            raise InvalidSpecError(
                f"e0s='isolated_atoms' needs a single-atom configuration of {', '.join(missing)} "
                "in the training data or in isolated_atoms_dataset"
            )
        return fit
    if method == "average":
        return e0_methods.average_e0s(configs, energies, model=foundation_model)
    if foundation_model is None:
        raise InvalidSpecError(f"e0s={method!r} needs a foundation model")
    if method == "foundation":
        return e0_methods.foundation_e0s(
            foundation_model, elements, configs=configs, energies=energies
        )
    return e0_methods.estimate_e0s(foundation_model, configs, energies)
