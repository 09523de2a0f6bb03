"""NVIDIA cuEquivariance kernels for MACE on a GPU (issue 27 item 2), and when they cannot be used.

mace-torch 0.3.16 trains with them (`--enable_cueq`: it converts the model after building it and
converts back to e3nn before saving, so the delivered .model stays a plain e3nn MACE) and ships
the converters (mace.cli.convert_e3nn_cueq / convert_cueq_e3nn) that inference uses here.
"""

import weakref
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

from core.science.spec import JobSpec, lora_of

E3NN = "e3nn"
CUEQ = "cuequivariance"
# The model classes mace's --enable_cueq converts (it asserts on others).
CONVERTIBLE = ("MACE", "ScaleShiftMACE")


@dataclass(frozen=True)
class Kernels:
    """Which kernels a job trains with, and why not the faster ones when it does not."""

    training: str  # E3NN or CUEQ
    reason: str | None = None  # set when a GPU job falls back to e3nn

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def cueq_import_error() -> str | None:
    """None when cuequivariance-torch imports, else why not."""
    try:
        import cuequivariance_torch  # noqa: F401
    except Exception as error:  # ImportError, or a CUDA library it cannot load
        return f"{type(error).__name__}: {error}"
    return None


def training_kernels(spec: JobSpec, device: str, model_class: str | None) -> Kernels:
    """cuEq for a GPU job whose model mace can convert; e3nn otherwise, with the reason a GPU
    job is told (a CPU job is not: the kernels are for GPUs)."""
    if not device.startswith("cuda"):
        return Kernels(E3NN)
    missing = cueq_import_error()
    if missing is not None:
        return Kernels(
            E3NN,
            "cuEquivariance kernels not used: cuequivariance-torch does not load "
            f"({missing}); install the gpu extra (pip install 'mlft[gpu]') for faster training",
        )
    if lora_of(spec.strategy) is not None:
        # run_train converts the unmerged model back to e3nn for saving, after merging LoRA into
        # a copy it then drops: the saved model would lack the adapters' training.
        return Kernels(
            E3NN,
            "cuEquivariance kernels not used: mace-torch 0.3.16 saves a LoRA model trained with "
            "--enable_cueq without its merged adapters, so LoRA strategies train with e3nn",
        )
    if model_class is not None and model_class not in CONVERTIBLE:
        return Kernels(
            E3NN, f"cuEquivariance kernels not used: mace cannot convert a {model_class}"
        )
    return Kernels(CUEQ)


def to_cueq(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """A cuEq copy of an e3nn MACE with the same weights (mace's own converter)."""
    from mace.cli.convert_e3nn_cueq import run as convert

    return _keeping_default_dtype(lambda: convert(model, device=_kind(device)))


def to_e3nn(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """The e3nn MACE of a cuEq one (what mace saves after training with --enable_cueq)."""
    from mace.cli.convert_cueq_e3nn import run as convert

    return _keeping_default_dtype(lambda: convert(model, device=_kind(device)))


_converted: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = (
    weakref.WeakKeyDictionary()
)


def inference_uses_cueq(device: str) -> bool:
    """Whether predictions and ASE calculators on `device` run cuEq kernels."""
    return device.startswith("cuda") and cueq_import_error() is None


def inference_model(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """On a GPU with cuEq available, the converted model (built once per model object); the
    model itself otherwise."""
    if not inference_uses_cueq(device):
        return model
    if type(model).__name__ not in CONVERTIBLE:
        return model
    if model not in _converted:
        _converted[model] = to_cueq(model, device).to(device).eval()
    return _converted[model]


def _kind(device: str) -> str:
    # The converters compare with "cuda" to turn on fused convolutions.
    return "cuda" if device.startswith("cuda") else device


def _keeping_default_dtype(convert):  # type: ignore[no-untyped-def]
    # The converters set torch's default dtype to the model's, process-wide.
    previous = torch.get_default_dtype()
    try:
        return convert()
    finally:
        torch.set_default_dtype(previous)
