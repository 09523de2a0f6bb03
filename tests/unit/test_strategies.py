"""Job specs become mace-torch arguments that mace's own parser accepts, with the paper presets."""

from pathlib import Path

import pytest
from mace.tools import build_default_arg_parser

from core.science.spec import JobSpec
from core.science.strategies import (
    PRESETS,
    TrainingInputs,
    effective_settings,
    to_mace_argv,
    training_loss,
)


def parse(spec: JobSpec, tmp_path: Path, foundation: Path | None):
    inputs = TrainingInputs(
        work_dir=tmp_path,
        train_file=tmp_path / "train.extxyz",
        valid_file=None,
        foundation_file=foundation,
        e0s={"H": -13.6, "O": -2037.8},
    )
    return build_default_arg_parser().parse_args(to_mace_argv(spec, inputs))


def test_naive_uses_the_paper_preset_and_the_e0_carrying_foundation(tmp_path) -> None:
    args = parse(JobSpec(train_dataset="d"), tmp_path, tmp_path / "f.model")
    assert args.lr == PRESETS["naive"].lr == 1e-3
    assert args.ema and args.ema_decay == 0.999
    assert args.clip_grad == 1.0
    assert args.weight_decay == 0.0
    assert (args.energy_weight, args.forces_weight) == (10.0, 10.0)
    assert args.foundation_model == str(tmp_path / "f.model")
    assert args.E0s == "foundation"
    assert args.multiheads_finetuning is False
    assert args.valid_fraction == 0.1


def test_scratch_passes_explicit_e0s_by_atomic_number(tmp_path) -> None:
    spec = JobSpec(train_dataset="d", strategy={"name": "scratch"}, e0s="average")
    args = parse(spec, tmp_path, None)
    assert args.foundation_model is None
    assert eval(args.E0s) == {1: -13.6, 8: -2037.8}
    assert args.lr == 1e-2 and args.ema_decay == 0.99 and args.clip_grad == 10.0


def test_user_hyperparameters_override_the_preset(tmp_path) -> None:
    spec = JobSpec(train_dataset="d", hyperparameters={"lr": 5e-4, "max_num_epochs": 3})
    args = parse(spec, tmp_path, tmp_path / "f.model")
    assert args.lr == 5e-4
    assert args.max_num_epochs == 3


def test_fine_tuning_without_a_foundation_file_is_a_programming_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="foundation"):
        parse(JobSpec(train_dataset="d"), tmp_path, None)


REPLAY = {"dataset": "r"}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ({"name": "freeze_interactions"}, {"freeze": 5, "foundation_model_elements": True}),
        ({"name": "freeze_readout_only"}, {"freeze": 6, "foundation_model_elements": True}),
        ({"name": "lora", "rank": 8, "alpha": 2.0}, {"lora": True, "lora_rank": 8}),
        (
            {"name": "multihead_replay", "replay": REPLAY},
            {"multiheads_finetuning": True, "pseudolabel_replay": False, "force_mh_ft_lr": True},
        ),
        # Pseudolabels are written into the replay file beforehand (core.science.pseudolabels), once
        # per foundation and structures, so mace must not relabel them.
        (
            {"name": "pseudolabel_replay", "replay": REPLAY},
            {"multiheads_finetuning": True, "pseudolabel_replay": False},
        ),
        (
            {"name": "replay_lora", "replay": REPLAY},
            {"multiheads_finetuning": True, "pseudolabel_replay": False, "lora": True},
        ),
    ],
)
def test_each_strategy_maps_onto_mace_flags_with_its_preset(tmp_path, strategy, expected) -> None:
    spec = JobSpec(train_dataset="d", strategy=strategy)
    inputs = TrainingInputs(
        work_dir=tmp_path,
        train_file=tmp_path / "train.extxyz",
        valid_file=None,
        foundation_file=tmp_path / "f.model",
        e0s={"H": -13.6, "Cu": 3.5},
        replay_file=tmp_path / "replay.extxyz",
    )

    args = build_default_arg_parser().parse_args(to_mace_argv(spec, inputs))

    assert {key: getattr(args, key) for key in expected} == expected
    preset = PRESETS[strategy["name"]]
    assert (args.lr, args.ema_decay, args.clip_grad) == (
        preset.lr,
        preset.ema_decay,
        preset.clip_grad,
    )
    if "replay" in strategy:
        assert args.pt_train_file == str((tmp_path / "replay.extxyz").resolve())
        assert eval(args.E0s) == {1: -13.6, 29: 3.5}
    else:
        assert args.E0s == "foundation"


def test_replay_strategies_refuse_averaged_e0s() -> None:
    with pytest.raises(ValueError, match="average"):
        JobSpec(
            train_dataset="d",
            strategy={"name": "pseudolabel_replay", "replay": REPLAY},
            e0s="average",
        )


def test_known_bad_choices_are_flagged() -> None:
    from core.science.strategies import spec_warnings

    assert spec_warnings(JobSpec(train_dataset="d")) == []
    flagged = spec_warnings(
        JobSpec(
            train_dataset="d",
            strategy={"name": "replay_lora", "replay": REPLAY},
            # Above replay_lora's own preset (1e-3), which alone warns of nothing (issue 21).
            hyperparameters={"lr": 1e-2},
        )
    )
    assert any("replay + LoRA" in w for w in flagged)
    assert any("lr 0.01" in w for w in flagged)
    assert "average" in spec_warnings(JobSpec(train_dataset="d", e0s="average"))[0]


def test_stress_is_trained_with_the_stress_loss_when_the_data_have_it(tmp_path) -> None:
    # Issue 18 item 3: periodic data with stress train it, with a settable weight.
    spec = JobSpec(train_dataset="d", hyperparameters={"stress_weight": 3.0})
    inputs = TrainingInputs(
        work_dir=tmp_path,
        train_file=tmp_path / "train.extxyz",
        valid_file=None,
        foundation_file=tmp_path / "f.model",
        e0s={"Cu": -3.0},
        stress=True,
    )

    args = build_default_arg_parser().parse_args(to_mace_argv(spec, inputs))

    assert args.loss == "stress"
    assert args.stress_weight == 3.0
    assert args.stress_key == "REF_stress"


def test_data_without_stress_or_a_zero_stress_weight_train_energy_and_forces(tmp_path) -> None:
    assert parse(JobSpec(train_dataset="d"), tmp_path, tmp_path / "f.model").loss == "weighted"
    spec = JobSpec(train_dataset="d", hyperparameters={"stress_weight": 0})
    assert training_loss(spec, stress=True) == "weighted"
    assert effective_settings(spec, stress=True)["loss"] == "weighted"
    assert effective_settings(JobSpec(train_dataset="d"), stress=True)["loss"] == "stress"


def test_scratch_needs_no_foundation_and_leaves_its_e0s_to_the_data_by_default() -> None:
    # Issue 18 item 6; issue 25: submission picks isolated atoms when the data hold them
    # (core.science.e0s.data_e0_method), "average" stands in until then.
    spec = JobSpec(train_dataset="d", foundation_model=None, strategy={"name": "scratch"})

    assert spec.foundation_model is None
    assert spec.e0s == "average" and spec.e0s_left_to_the_data()
    assert not JobSpec(
        train_dataset="d", strategy={"name": "scratch"}, e0s="average"
    ).e0s_left_to_the_data()
    # The study's warning is about fine-tuning: never said of a scratch model's E0s.
    from core.science.strategies import spec_warnings

    assert spec_warnings(spec) == []


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "naive"},
        {"name": "lora"},
        {"name": "freeze_interactions"},
        {"name": "multihead_replay", "replay": REPLAY},
        {"name": "pseudolabel_replay", "replay": REPLAY},
        {"name": "replay_lora", "replay": REPLAY},
    ],
)
def test_every_fine_tuning_strategy_keeps_the_foundation_elements_unless_told(
    tmp_path, strategy
) -> None:
    # Issue 25: mace keeps only the training data's elements without the flag.
    inputs = TrainingInputs(
        work_dir=tmp_path,
        train_file=tmp_path / "train.extxyz",
        valid_file=None,
        foundation_file=tmp_path / "f.model",
        e0s={"H": -13.6},
        replay_file=tmp_path / "replay.extxyz",
    )
    parser = build_default_arg_parser()

    default = parser.parse_args(to_mace_argv(JobSpec(train_dataset="d", strategy=strategy), inputs))

    assert default.foundation_model_elements is True
    if strategy["name"].startswith("freeze"):
        with pytest.raises(ValueError, match="elements='foundation'"):
            JobSpec(train_dataset="d", strategy=strategy, elements="training")
        return
    training = JobSpec(train_dataset="d", strategy=strategy, elements="training")
    assert parser.parse_args(to_mace_argv(training, inputs)).foundation_model_elements is False


@pytest.mark.parametrize("method", ["estimated", "foundation"])
def test_scratch_refuses_e0_methods_that_need_a_foundation(method: str) -> None:
    with pytest.raises(ValueError, match="scratch model has none"):
        JobSpec(train_dataset="d", strategy={"name": "scratch"}, e0s=method)


def test_fine_tuning_without_a_foundation_is_refused() -> None:
    with pytest.raises(ValueError, match="only scratch trains without one"):
        JobSpec(train_dataset="d", foundation_model=None)
