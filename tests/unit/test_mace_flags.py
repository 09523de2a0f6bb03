"""mace flag names live in core.science.strategies: the demo foundation's training takes the shared
ones (float64, label keys, work folders, no plots) from there, and mace's own parser accepts
them."""

from pathlib import Path

from mace.tools import build_default_arg_parser

from core.science.demo_foundation import DEMO_FOUNDATION_NAME, _mace_argv
from core.science.spec import JobSpec
from core.science.strategies import TrainingInputs, saved_model_file, shared_arguments, to_mace_argv


def test_jobs_and_the_demo_foundation_share_the_service_s_mace_flags(tmp_path: Path) -> None:
    inputs = TrainingInputs(
        work_dir=tmp_path,
        train_file=tmp_path / "train.extxyz",
        valid_file=None,
        foundation_file=tmp_path / "f.model",
        e0s={},
    )
    demo = _mace_argv(tmp_path / "train.xyz", tmp_path, seed=0, max_epochs=1)
    job = to_mace_argv(JobSpec(train_dataset="d"), inputs)

    for argv in (demo, job):
        assert set(shared_arguments(tmp_path)) <= set(argv)
        args = build_default_arg_parser().parse_args(argv)
        assert (args.default_dtype, args.energy_key, args.plot) == ("float64", "REF_energy", False)
        assert args.model_dir == str(saved_model_file(tmp_path, "x").parent)


def test_the_demo_model_file_is_where_mace_saves_its_run(tmp_path: Path) -> None:
    args = build_default_arg_parser().parse_args(
        _mace_argv(tmp_path / "train.xyz", tmp_path, seed=0, max_epochs=1)
    )
    assert Path(args.model_dir) / f"{args.name}.model" == saved_model_file(
        tmp_path, DEMO_FOUNDATION_NAME
    )
