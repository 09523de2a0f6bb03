"""cuEquivariance kernels (issue 27 item 2): mace's converted model predicts what the e3nn one
does, and which jobs train with them."""

import numpy as np
import pytest
import torch
from mace.tools import build_default_arg_parser

from core.data.demo_data import generate_target_dataset
from core.science.cueq import CUEQ, E3NN, cueq_import_error, to_cueq, to_e3nn, training_kernels
from core.science.inference import predict
from core.science.spec import JobSpec
from core.science.strategies import TrainingInputs, to_mace_argv

needs_cueq = pytest.mark.skipif(
    cueq_import_error() is not None, reason=f"cuequivariance-torch: {cueq_import_error()}"
)


@needs_cueq
def test_the_cueq_converted_model_gives_the_e3nn_energies_and_forces(demo_foundation) -> None:
    e3nn = torch.load(demo_foundation, weights_only=False, map_location="cpu").double()
    configs = generate_target_dataset(6, seed=3, system="molecules")

    converted = to_cueq(e3nn, "cpu")
    back = to_e3nn(converted, "cpu")
    reference, fast, round_trip = (predict(m, configs) for m in (e3nn, converted, back))

    assert "cuequivariance" in type(converted.interactions[0].linear_up).__module__ or any(
        "cuequivariance" in type(module).__module__ for module in converted.modules()
    )
    for ref, got, again in zip(reference, fast, round_trip, strict=True):
        assert got.energy == pytest.approx(ref.energy, abs=1e-8)
        np.testing.assert_allclose(got.forces, ref.forces, atol=1e-8)
        assert again.energy == pytest.approx(ref.energy, abs=1e-10)
    assert torch.get_default_dtype() == torch.float32  # the converters' side effect undone


def test_gpu_jobs_train_with_cueq_and_cpu_jobs_and_lora_with_e3nn() -> None:
    naive = JobSpec.model_validate({"train_dataset": "d", "strategy": {"name": "naive"}})
    lora = JobSpec.model_validate({"train_dataset": "d", "strategy": {"name": "lora"}})

    assert training_kernels(naive, "cpu", "ScaleShiftMACE").training == E3NN
    assert training_kernels(naive, "cpu", "ScaleShiftMACE").reason is None
    on_gpu = training_kernels(lora, "cuda", "ScaleShiftMACE")
    assert on_gpu.training == E3NN and "LoRA" in (on_gpu.reason or "")
    if cueq_import_error() is None:
        assert training_kernels(naive, "cuda", "ScaleShiftMACE").training == CUEQ
        assert training_kernels(naive, "cuda", "AtomicDipolesMACE").training == E3NN


def test_mace_reads_the_cueq_flag_the_job_passes(tmp_path) -> None:
    inputs = TrainingInputs(
        work_dir=tmp_path,
        train_file=tmp_path / "train.extxyz",
        valid_file=None,
        foundation_file=tmp_path / "f.model",
        e0s={},
        device="cuda",
        cueq=True,
    )

    args = build_default_arg_parser().parse_args(to_mace_argv(JobSpec(train_dataset="d"), inputs))

    assert args.enable_cueq is True and args.only_cueq is False
