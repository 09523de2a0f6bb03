"""Run only inside the model sandbox (core.registry.model_sandbox): read an uploaded pickle with
`torch.load(weights_only=True)` and an allowlist of classes, and write its safe form.

    python -m core.registry.sandbox_reader <model file> <safe file to write> <sha256 of the file>

The allowlist names classes one by one, never a module prefix and never a library function.
A pickled MACE also refers to three things that are not classes, each replaced here by an inert
stand-in of our own, so that nothing from the file is ever executed, not even in this process:

- `torch.fx.graph_module.reduce_graph_module` rebuilds an fx GraphModule by exec-ing Python source
  stored in the pickle (mace's symmetric contractions keep their einsum code this way);
- e3nn's code-generating modules (`Linear`, `TensorProduct`, ...) load TorchScript from the pickle
  in `__setstate__`;
- the readout's activation is a function (`torch.nn.functional.silu`), kept here as its name.

The generated code is not needed: the safe form holds the architecture, and every use rebuilds
the model with mace's constructors, which generate that code themselves.
"""

import json
import re
import sys
from pathlib import Path
from typing import Any


class NamedActivation:
    """Where a pickle names an activation function: its name, never the function."""

    def __init__(self, name: str) -> None:
        self.activation_name = name
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"activation {self.activation_name} is inert in the sandbox")


def inert_graph_module(body: Any, import_block: Any = None) -> Any:
    """In place of torch.fx's reduce_graph_module: an empty module, the code never exec'd."""
    import torch

    return torch.nn.Module()


def _inert_codegen(cls: type) -> type:
    """A subclass of an e3nn code-generating module whose unpickling skips the TorchScript."""
    import torch

    def __setstate__(self: Any, state: dict[str, Any]) -> None:
        state = {key: value for key, value in state.items() if key != "__codegen__"}
        torch.nn.Module.__setstate__(self, state)

    return type(cls.__name__, (cls,), {"__setstate__": __setstate__})


def allowed_globals() -> list[Any]:
    """What a pickled MACE/ScaleShiftMACE model of mace-torch 0.3.16 may refer to."""
    import torch
    from mace.modules import blocks, irreps_tools, models, radial, symmetric_contraction
    from e3nn import math as e3nn_math  # isort: skip
    from e3nn import nn as e3nn_nn
    from e3nn import o3
    from e3nn.o3 import _irreps, _linear
    from e3nn.o3._tensor_product import _instruction, _sub, _tensor_product
    from e3nn.util.codegen import CodeGenMixin

    classes: list[Any] = [
        models.MACE,  # refused later with the reason (mace fine-tunes ScaleShiftMACE only)
        models.ScaleShiftMACE,
        blocks.AtomicEnergiesBlock,
        blocks.EquivariantProductBasisBlock,
        blocks.LinearNodeEmbeddingBlock,
        blocks.LinearReadoutBlock,
        blocks.NonLinearReadoutBlock,
        blocks.NonLinearBiasReadoutBlock,
        blocks.GeneralNonLinearBiasReadoutBlock,
        blocks.RadialEmbeddingBlock,
        blocks.ScaleShiftBlock,
        blocks.RealAgnosticInteractionBlock,
        blocks.RealAgnosticResidualInteractionBlock,
        blocks.RealAgnosticAttResidualInteractionBlock,
        blocks.RealAgnosticDensityInteractionBlock,
        blocks.RealAgnosticDensityResidualInteractionBlock,
        blocks.RealAgnosticResidualNonLinearInteractionBlock,
        radial.BesselBasis,
        radial.GaussianBasis,
        radial.ChebychevBasis,
        radial.PolynomialCutoff,
        radial.AgnesiTransform,
        radial.SoftTransform,
        radial.ZBLBasis,
        symmetric_contraction.SymmetricContraction,
        symmetric_contraction.Contraction,
        irreps_tools.reshape_irreps,
        _irreps.Irrep,
        _irreps.Irreps,
        _irreps._MulIr,
        _linear.Instruction,
        _instruction.Instruction,
        o3.SphericalHarmonics,
        e3nn_nn.Activation,
        e3nn_nn.FullyConnectedNet,
        e3nn_nn._fc._Layer,
        e3nn_math._normalize_activation.normalize2mom,
        torch.nn.ModuleList,
        torch.nn.ModuleDict,
        torch.nn.ParameterList,
        torch.nn.Sequential,
        torch.nn.Identity,
        torch.nn.SiLU,
        torch.nn.Linear,
        torch.nn.LayerNorm,
        torch.fx._symbolic_trace.Tracer,
    ]
    allowed: list[Any] = []
    for cls in classes:
        if isinstance(cls, type) and issubclass(cls, CodeGenMixin):
            allowed.append((_inert_codegen(cls), f"{cls.__module__}.{cls.__qualname__}"))
        else:
            allowed.append(cls)
    for cls in (_linear.Linear, _tensor_product.TensorProduct, _sub.FullyConnectedTensorProduct):
        allowed.append((_inert_codegen(cls), f"{cls.__module__}.{cls.__qualname__}"))
    allowed.append((inert_graph_module, "torch.fx.graph_module.reduce_graph_module"))
    for name, path in (
        ("silu", "torch.nn.functional.silu"),
        ("tanh", "torch.tanh"),
        ("abs", "torch.abs"),
    ):
        allowed.append((NamedActivation(name), path))
    return allowed


def main(arguments: list[str]) -> int:
    source, target, sha256 = Path(arguments[0]), Path(arguments[1]), arguments[2]
    try:
        import mace  # noqa: F401  (mace's modules register themselves before the load)
        import torch

        from core.errors import InvalidModelFileError
        from core.registry.safe_model import read_safe_model, write_safe_model

        torch.serialization.add_safe_globals(allowed_globals())
        try:
            model = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as error:  # torch's UnpicklingError names the global it refused
            print("MLFT-RESULT " + json.dumps({"error": _unpickling_reason(error)}))
            return 0
        if not isinstance(model, torch.nn.Module):
            found = f"{type(model).__module__}.{type(model).__qualname__}"
            print("MLFT-RESULT " + json.dumps({"error": f"the file holds a {found}, not a model"}))
            return 0
        try:
            write_safe_model(model, target, sha256)
            # The safe form must rebuild: mace's constructor, then a strict load of the weights.
            read_safe_model(target.read_bytes())
        except InvalidModelFileError as error:
            print("MLFT-RESULT " + json.dumps({"error": str(error)}))
            return 0
    except Exception as error:  # anything else: reported, never a traceback to the caller
        print("MLFT-RESULT " + json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}))
        return 0
    print("MLFT-RESULT " + json.dumps({"ok": True}))
    return 0


def _unpickling_reason(error: Exception) -> str:
    text = str(error)
    # torch names what it refused: "Unsupported global: GLOBAL x.y" or "... unsupported GLOBAL
    # x.y whose module x is blocked".
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused is not None:
        return (
            f"the pickle refers to {refused.group(1)}, which is not one of the classes a MACE "
            "model is made of; refusing to load it"
        )
    lines = [line for line in text.splitlines() if line.strip()]
    return f"the file cannot be read as a model with weights_only: {' '.join(lines)[:400]}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
