"""The strategy table is the one source of what each strategy is: the spec, the sweep, the
presets and the mace arguments all agree with it."""

from pathlib import Path
from typing import get_args

import pytest
from mace.tools import build_default_arg_parser

from core.science.spec import (
    E0_METHOD_NAMES,
    E0_METHOD_SUMMARIES,
    EXPLICIT_E0S,
    AnyStrategy,
    E0Method,
    JobSpec,
    e0_method_of,
    freeze_level_of,
    lora_of,
    replay_of,
    uses_pseudolabels,
)
from core.science.strategies import PRESETS, TrainingInputs, spec_warnings, to_mace_argv
from core.science.strategy_table import STRATEGIES, STRATEGY_NAMES, StrategyName
from core.workflows.sweeps import SweepSpec, expand


def job_spec(name: str) -> JobSpec:
    strategy: dict = {"name": name}
    if STRATEGIES[name].replay:
        strategy["replay"] = {"dataset": "r"}
    e0s = "estimated" if STRATEGIES[name].foundation else "average"
    return JobSpec(train_dataset="d", strategy=strategy, e0s=e0s)


def mace_args(spec: JobSpec, tmp_path: Path):
    inputs = TrainingInputs(
        work_dir=tmp_path,
        train_file=tmp_path / "train.extxyz",
        valid_file=None,
        foundation_file=tmp_path / "f.model",
        e0s={"H": -13.6},
        replay_file=tmp_path / "replay.extxyz",
    )
    return build_default_arg_parser().parse_args(to_mace_argv(spec, inputs))


def test_the_table_names_exactly_the_strategies_of_the_spec_union() -> None:
    union_names = {member.model_fields["name"].default for member in get_args(AnyStrategy)}
    assert tuple(STRATEGIES) == STRATEGY_NAMES == get_args(StrategyName)
    assert union_names == set(STRATEGY_NAMES)
    assert set(PRESETS) == set(STRATEGY_NAMES)


def test_a_sweep_defaults_to_every_strategy_of_the_table() -> None:
    sweep = SweepSpec(base={"train_dataset": "d"}, replay={"dataset": "r"})
    assert tuple(sweep.strategies) == STRATEGY_NAMES
    assert [spec.strategy.name for spec in expand(sweep)] == list(STRATEGY_NAMES)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_each_strategy_runs_as_its_traits_say(name: str, tmp_path: Path) -> None:
    traits = STRATEGIES[name]
    spec = job_spec(name)

    args = mace_args(spec, tmp_path)

    assert (args.lr, args.ema_decay, args.clip_grad) == (
        traits.preset.lr,
        traits.preset.ema_decay,
        traits.preset.clip_grad,
    )
    assert (args.foundation_model is not None) == traits.foundation
    assert freeze_level_of(spec.strategy) == traits.freeze_level == args.freeze
    assert bool(args.lora) == traits.lora == (lora_of(spec.strategy) is not None)
    # mace's multihead default means nothing without a foundation to take heads from.
    assert bool(args.multiheads_finetuning and args.foundation_model) == traits.replay
    assert (replay_of(spec.strategy) is not None) == traits.replay
    assert uses_pseudolabels(spec.strategy) == (traits.pseudolabels != "never")
    if traits.caution is not None:
        assert traits.caution in spec_warnings(spec)


def test_optional_pseudolabels_follow_the_spec_field() -> None:
    strategy = {"name": "replay_lora", "replay": {"dataset": "r"}, "pseudolabel": False}
    assert not uses_pseudolabels(JobSpec(train_dataset="d", strategy=strategy).strategy)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("naive", "all"),
        ("freeze_interactions", "unfrozen"),
        ("lora", "lora_adapters"),
        ("replay_lora", "lora_adapters"),
        ("scratch", "all"),
    ],
)
def test_the_trainable_rule_follows_freezing_and_lora(name: str, rule: str) -> None:
    assert STRATEGIES[name].trainable == rule


def test_the_e0_methods_are_the_spec_names_and_explicit_values() -> None:
    assert set(E0_METHOD_SUMMARIES) == set(get_args(E0Method)) == {*E0_METHOD_NAMES, EXPLICIT_E0S}
    for name in E0_METHOD_NAMES:
        assert e0_method_of(JobSpec(train_dataset="d", e0s=name).e0s) == name
    assert e0_method_of(JobSpec(train_dataset="d", e0s={"H": -13.6}).e0s) == EXPLICIT_E0S


@pytest.fixture(scope="module")
def foundation(demo_foundation: Path):
    import torch

    return torch.load(demo_foundation, weights_only=False)


@pytest.mark.parametrize("name", ["naive", "freeze_interactions", "freeze_readout_only", "lora"])
def test_the_model_check_and_the_cost_probe_train_the_same_parameters(name, foundation) -> None:
    from core.science.cost import trainable_copy
    from core.science.model_checks import FROZEN_PREFIXES, trainable_parameters

    spec = job_spec(name)
    counted = trainable_parameters(spec, foundation)
    probe = trainable_copy(spec, foundation)
    trained = {n: p.numel() for n, p in probe.named_parameters() if p.requires_grad}

    assert counted["trainable"] == sum(trained.values()) > 0
    assert counted["total"] == sum(p.numel() for p in foundation.parameters())
    rule = STRATEGIES[name].trainable
    if rule == "all":
        assert counted["fraction"] == 1
    elif rule == "unfrozen":
        frozen = FROZEN_PREFIXES[STRATEGIES[name].freeze_level]
        assert not any(n.startswith(frozen) for n in trained)
    else:
        assert all("lora_" in n for n in trained)
    # The probe is a copy: the foundation itself still trains everywhere.
    assert all(p.requires_grad for p in foundation.parameters())
