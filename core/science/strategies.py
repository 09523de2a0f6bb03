"""Strategy presets and the translation of a job into mace-torch arguments.

This is the only module that names mace-torch command-line flags; a test parses its output with
`mace.tools.build_default_arg_parser()` so that a renamed flag fails loudly.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

from ase.data import atomic_numbers

from core.science.spec import JobSpec, ScratchStrategy, freeze_level_of, lora_of, replay_of
from core.science.strategy_table import STRATEGIES, Preset, traits_of

# The study's presets by strategy (core.science.strategy_table holds them with the other traits).
PRESETS: dict[str, Preset] = {name: traits.preset for name, traits in STRATEGIES.items()}


def effective_hyperparameters(spec: JobSpec) -> Preset:
    preset = PRESETS[spec.strategy.name]
    chosen = spec.hyperparameters
    return Preset(
        lr=chosen.lr if chosen.lr is not None else preset.lr,
        ema_decay=chosen.ema_decay if chosen.ema_decay is not None else preset.ema_decay,
        clip_grad=chosen.clip_grad if chosen.clip_grad is not None else preset.clip_grad,
    )


def effective_settings(spec: JobSpec, *, stress: bool = False) -> dict[str, object]:
    """Every training setting the job runs with, presets filled in: stored with the job.
    `stress`: whether the training data have periodic configurations with stress or virials."""
    return {
        **spec.hyperparameters.model_dump(),
        **asdict(effective_hyperparameters(spec)),
        "loss": training_loss(spec, stress),
    }


def training_loss(spec: JobSpec, stress: bool) -> str:
    """mace's loss: "stress" (energy, forces and stress) for data with stress, unless its weight
    is 0; "weighted" (energy and forces) otherwise. Virials are converted to stress on reading
    (core.data.datasets), so one loss covers both."""
    return "stress" if stress and spec.hyperparameters.stress_weight > 0 else "weighted"


# The study's multihead sweep: lr 1e-3 collapsed the replay head while the target looked fine.
REPLAY_SAFE_LR = 1e-4


def spec_warnings(spec: JobSpec) -> list[str]:
    """Known-bad choices from the study (science.md §1, §2), accepted but flagged."""
    warnings = []
    # The study's finding is about fine-tuning; a scratch model has no foundation to estimate
    # E0s against, and the service never warns against a choice it made itself (issue 25).
    if spec.e0s == "average" and traits_of(spec.strategy.name).foundation:
        warnings.append(
            "e0s='average' fits E0s on the data alone; the study found 2-3x worse forces and "
            "unstable MD with it: prefer 'estimated' or isolated atoms"
        )
    caution = traits_of(spec.strategy.name).caution
    if caution is not None:
        warnings.append(caution)
    lr = effective_hyperparameters(spec).lr
    # A strategy's own preset is the study's choice for it (replay_lora: 1e-3, its adapters
    # being all that trains), never a reason to warn.
    safe = max(REPLAY_SAFE_LR, PRESETS[spec.strategy.name].lr)
    if replay_of(spec.strategy) is not None and lr > safe:
        warnings.append(
            f"replay with lr {lr:g} above {safe:g}: in the study lr 1e-3 collapsed the "
            "replay head (force error 24 → 218 meV/Å) while the target head looked fine; watch "
            "the replay head's validation error"
        )
    return warnings


@dataclass(frozen=True)
class TrainingInputs:
    """Files a job hands to mace-torch, all prepared by core.workflows.mace_inputs."""

    work_dir: Path
    train_file: Path
    valid_file: Path | None
    # Single-head strategies: a copy of the foundation that already carries the job's E0s
    # (science.md §5). Replay: the foundation itself, since the replay head takes its E0s from it.
    foundation_file: Path | None
    # Scratch: the job's E0s. Replay: the target head's E0s for every element the model keeps
    # (target and replay data, or every foundation element). Unused otherwise.
    e0s: dict[str, float]
    device: str = "cpu"
    replay_file: Path | None = None
    # Whether the training file has periodic configurations with stress (core.workflows.training).
    stress: bool = False
    # Train with cuEquivariance kernels (core.science.cueq.training_kernels decides).
    cueq: bool = False


RUN_NAME = "mlft"


def shared_arguments(work: Path) -> list[str]:
    """Flags of every mace training the service runs (jobs and the demo foundation): float64
    (E0s are verified to 1e-6 eV), the label keys core.data.datasets writes, one work folder, no
    plots, per-atom errors each epoch."""
    return [
        "--default_dtype=float64",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        "--stress_key=REF_stress",
        # mace writes its validation split next to --work_dir, the current folder by default.
        f"--work_dir={work}",
        f"--log_dir={work / 'logs'}",
        f"--model_dir={work / 'model'}",
        f"--checkpoints_dir={work / 'checkpoints'}",
        f"--results_dir={work / 'results'}",
        "--eval_interval=1",
        "--error_table=PerAtomRMSE",
        "--save_cpu",
        "--plot=False",
    ]


def saved_model_file(work: Path, name: str) -> Path:
    """Where mace saves the model of the run `--name=name` with `shared_arguments(work)`."""
    return work / "model" / f"{name}.model"


def to_mace_argv(spec: JobSpec, inputs: TrainingInputs) -> list[str]:
    hyper = spec.hyperparameters
    effective = effective_hyperparameters(spec)
    argv = [
        f"--name={RUN_NAME}",
        f"--seed={hyper.seed}",
        f"--device={inputs.device}",
        f"--train_file={inputs.train_file}",
        *shared_arguments(inputs.work_dir),
        f"--loss={training_loss(spec, inputs.stress)}",
        f"--energy_weight={hyper.energy_weight}",
        f"--forces_weight={hyper.forces_weight}",
        f"--stress_weight={hyper.stress_weight}",
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
        # Picks up the newest checkpoint when a job is re-run after its worker died.
        "--restart_latest",
        "--num_workers=0",
    ]
    if inputs.cueq:
        # mace converts the model to cuEq for training and back to e3nn before saving it.
        argv.append("--enable_cueq=True")
    if inputs.valid_file is not None:
        argv.append(f"--valid_file={inputs.valid_file}")
    else:
        argv.append(f"--valid_fraction={spec.valid_fraction}")
    if isinstance(spec.strategy, ScratchStrategy):
        return argv + _scratch_arguments(spec.strategy, inputs.e0s)
    if inputs.foundation_file is None:
        raise ValueError("a fine-tuning strategy needs the prepared foundation model file")
    argv.append(f"--foundation_model={inputs.foundation_file}")
    argv += _replay_arguments(spec, inputs)
    if spec.elements == "foundation":
        # Issue 25: the model keeps every element of its foundation, whatever the strategy.
        # Freezing needs it too (the spec refuses elements='training' there): it makes "frozen"
        # literal, as mace otherwise rescales the per-element embedding rows it copies into a
        # smaller model. mace pads a head's missing E0s with 0 eV; TrainingInputs.e0s covers
        # every foundation element for the replay strategies, so none is padded.
        argv.append("--foundation_model_elements=True")
    level = freeze_level_of(spec.strategy)
    if level is not None:
        argv.append(f"--freeze={level}")
    lora = lora_of(spec.strategy)
    if lora is not None:
        rank, alpha = lora
        argv += ["--lora=True", f"--lora_rank={rank}", f"--lora_alpha={alpha}"]
    return argv


def _replay_arguments(spec: JobSpec, inputs: TrainingInputs) -> list[str]:
    if replay_of(spec.strategy) is None:
        # E0s were written into the foundation copy; "foundation" makes mace keep exactly those.
        return ["--multiheads_finetuning=False", "--E0s=foundation"]
    if inputs.replay_file is None:
        raise ValueError("a replay strategy needs the prepared replay file")
    argv = [
        "--multiheads_finetuning=True",
        # mace resolves a relative path against its own working folder.
        f"--pt_train_file={inputs.replay_file.resolve()}",
        # Without it mace overrides lr to 1e-4 and EMA to 0.99999 (science.md §1).
        "--force_mh_ft_lr=True",
        f"--E0s={_by_atomic_number(inputs.e0s)!r}",
    ]
    # Pseudolabel strategies replay the foundation's own labels, which core.science.pseudolabels
    # writes into the replay file before training, so mace's --pseudolabel_replay is not used.
    return argv


def _by_atomic_number(e0s: dict[str, float]) -> dict[int, float]:
    return {atomic_numbers[symbol]: value for symbol, value in sorted(e0s.items())}


def _scratch_arguments(strategy: ScratchStrategy, e0s: dict[str, float]) -> list[str]:
    arch = strategy.architecture
    return [
        "--model=MACE",
        f"--r_max={arch.r_max}",
        f"--hidden_irreps={arch.hidden_irreps}",
        f"--num_interactions={arch.num_interactions}",
        f"--correlation={arch.correlation}",
        f"--E0s={_by_atomic_number(e0s)!r}",
    ]
