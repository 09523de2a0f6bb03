"""Strategy presets and the translation of a job into mace-torch arguments.

This is the only module that names mace-torch command-line flags; a test parses its output with
`mace.tools.build_default_arg_parser()` so that a renamed flag fails loudly.
"""

from dataclasses import dataclass
from pathlib import Path

from ase.data import atomic_numbers

from core.spec import JobSpec, ScratchStrategy


@dataclass(frozen=True)
class Preset:
    lr: float
    ema_decay: float
    clip_grad: float


# arXiv 2606.12704 presets (science.md §1): AdamW, weight decay 0, E/F loss weights 10/10.
PRESETS: dict[str, Preset] = {
    "naive": Preset(lr=1e-3, ema_decay=0.999, clip_grad=1.0),
    "scratch": Preset(lr=1e-2, ema_decay=0.99, clip_grad=10.0),
}


@dataclass(frozen=True)
class EffectiveHyperparameters:
    lr: float
    ema_decay: float
    clip_grad: float


def effective_hyperparameters(spec: JobSpec) -> EffectiveHyperparameters:
    preset = PRESETS[spec.strategy.name]
    chosen = spec.hyperparameters
    return EffectiveHyperparameters(
        lr=chosen.lr if chosen.lr is not None else preset.lr,
        ema_decay=chosen.ema_decay if chosen.ema_decay is not None else preset.ema_decay,
        clip_grad=chosen.clip_grad if chosen.clip_grad is not None else preset.clip_grad,
    )


@dataclass(frozen=True)
class TrainingInputs:
    """Files a job hands to mace-torch, all prepared by core.training."""

    work_dir: Path
    train_file: Path
    valid_file: Path | None
    # A copy of the foundation that already carries the job's E0s (science.md §5); None for scratch.
    foundation_file: Path | None
    e0s: dict[str, float]
    device: str = "cpu"


RUN_NAME = "mlft"


def to_mace_argv(spec: JobSpec, inputs: TrainingInputs) -> list[str]:
    hyper = spec.hyperparameters
    effective = effective_hyperparameters(spec)
    work = inputs.work_dir
    argv = [
        f"--name={RUN_NAME}",
        f"--seed={hyper.seed}",
        f"--device={inputs.device}",
        "--default_dtype=float64",
        f"--train_file={inputs.train_file}",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        "--stress_key=REF_stress",
        # mace writes its validation split next to --work_dir, the current folder by default.
        f"--work_dir={work}",
        f"--log_dir={work / 'logs'}",
        f"--model_dir={work / 'model'}",
        f"--checkpoints_dir={work / 'checkpoints'}",
        f"--results_dir={work / 'results'}",
        "--loss=weighted",
        f"--energy_weight={hyper.energy_weight}",
        f"--forces_weight={hyper.forces_weight}",
        "--optimizer=adamw",
        f"--weight_decay={hyper.weight_decay}",
        f"--lr={effective.lr}",
        "--ema",
        f"--ema_decay={effective.ema_decay}",
        f"--clip_grad={effective.clip_grad}",
        f"--batch_size={hyper.batch_size}",
        f"--valid_batch_size={hyper.valid_batch_size}",
        f"--max_num_epochs={hyper.max_num_epochs}",
        f"--patience={hyper.patience}",
        "--eval_interval=1",
        "--error_table=PerAtomRMSE",
        "--save_cpu",
        "--plot=False",
        # Picks up the newest checkpoint when a job is re-run after its worker died.
        "--restart_latest",
        "--num_workers=0",
    ]
    if inputs.valid_file is not None:
        argv.append(f"--valid_file={inputs.valid_file}")
    else:
        argv.append(f"--valid_fraction={spec.valid_fraction}")
    if isinstance(spec.strategy, ScratchStrategy):
        argv += _scratch_arguments(spec.strategy, inputs.e0s)
    else:
        argv += _foundation_arguments(inputs)
    return argv


def _foundation_arguments(inputs: TrainingInputs) -> list[str]:
    if inputs.foundation_file is None:
        raise ValueError("a fine-tuning strategy needs the prepared foundation model file")
    # E0s were written into the foundation copy; "foundation" makes mace keep exactly those.
    return [
        f"--foundation_model={inputs.foundation_file}",
        "--multiheads_finetuning=False",
        "--E0s=foundation",
    ]


def _scratch_arguments(strategy: ScratchStrategy, e0s: dict[str, float]) -> list[str]:
    arch = strategy.architecture
    by_number = {atomic_numbers[symbol]: value for symbol, value in e0s.items()}
    return [
        "--model=MACE",
        f"--r_max={arch.r_max}",
        f"--hidden_irreps={arch.hidden_irreps}",
        f"--num_interactions={arch.num_interactions}",
        f"--correlation={arch.correlation}",
        f"--E0s={by_number!r}",
    ]
