"""The safe form of a foundation model: weights as safetensors, architecture and facts as JSON.

A registered foundation is kept only in this form. Its architecture is the config mace-torch itself
extracts for fine-tuning (`mace.tools.scripts_utils.extract_config_mace_model`), written as JSON
with every class and function named, never pickled; a model is rebuilt from it with mace's own
`ScaleShiftMACE` constructor and the weights loaded strictly, as mace's `extract_model` does. The
JSON is parsed into a closed pydantic model whose class and activation names are looked up in
fixed tables, so nothing in the file can name code to run. One file holds everything: the
safetensors header's metadata carries the architecture, the facts a request needs (elements,
heads, E0s, r_max, size, dtype) and the sha256 of the file it was made from.
"""

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import InvalidModelFileError

if TYPE_CHECKING:
    import torch

FORMAT = "mlft-safe-model-1"
ARCHITECTURE_KEY = "mlft.architecture"
FACTS_KEY = "mlft.facts"
FORMAT_KEY = "mlft.format"
SOURCE_KEY = "mlft.source_sha256"
# safetensors' header is JSON preceded by its length; a real one is a few hundred kB at most.
_MAX_HEADER_BYTES = 64 << 20

GateName = Literal["silu", "tanh", "abs"]
# mace-torch 0.3.16's classes, by the names its own tables (interaction_classes,
# readout_classes) use; anything else is refused.
InteractionName = Literal[
    "RealAgnosticResidualInteractionBlock",
    "RealAgnosticAttResidualInteractionBlock",
    "RealAgnosticInteractionBlock",
    "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock",
    "RealAgnosticResidualNonLinearInteractionBlock",
]
ReadoutName = Literal[
    "LinearReadoutBlock",
    "NonLinearReadoutBlock",
    "NonLinearBiasReadoutBlock",
    "GeneralNonLinearBiasReadoutBlock",
]


class MaceArchitecture(BaseModel):
    """The constructor arguments of a ScaleShiftMACE, as extract_config_mace_model reads them."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model_class: Literal["ScaleShiftMACE"]
    dtype: Literal["float32", "float64"]
    r_max: float
    num_bessel: int
    num_polynomial_cutoff: int
    max_ell: int
    interaction_cls: InteractionName
    interaction_cls_first: InteractionName
    num_interactions: int
    num_elements: int
    hidden_irreps: str
    edge_irreps: str | None
    MLP_irreps: str
    gate: GateName | None
    use_reduced_cg: bool
    use_so3: bool
    use_edge_irreps_first: bool
    use_agnostic_product: bool
    use_last_readout_only: bool
    use_embedding_readout: bool
    readout_cls: ReadoutName
    # One row per head (or one row for a single-head model), in atomic_numbers order.
    atomic_energies: list[list[float]] | list[float]
    avg_num_neighbors: float
    atomic_numbers: list[int]
    correlation: int | list[int]
    radial_type: Literal["bessel", "gaussian", "chebyshev"]
    apply_cutoff: bool
    radial_MLP: list[int]
    pair_repulsion: bool
    distance_transform: Literal["Agnesi", "Soft"] | None
    atomic_inter_scale: list[float] | float
    atomic_inter_shift: list[float] | float
    heads: list[str]


class ModelFacts(BaseModel):
    """What a request needs to know about a foundation, recorded once at registration."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    architecture: str  # the mace class: "ScaleShiftMACE"
    heads: list[str]
    elements: list[str]
    # E0s (eV) per head and element symbol.
    e0s: dict[str, dict[str, float]]
    r_max: float
    parameters: int
    dtype: Literal["float32", "float64"]
    num_interactions: int


def _irreps(value: Any) -> str:
    return str(value)


def _floats(value: Any) -> list[float] | list[list[float]] | float:
    import numpy as np

    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else array.tolist()


def architecture_of(model: "torch.nn.Module") -> MaceArchitecture:
    """The architecture of a ScaleShiftMACE from mace's own fine-tuning config;
    InvalidModelFileError naming why for anything mace cannot fine-tune from (a plain MACE lacks
    what it needs)."""
    from mace.tools.scripts_utils import extract_config_mace_model

    kind = type(model).__name__
    if kind != "ScaleShiftMACE":
        raise InvalidModelFileError(
            f"the model is a {kind}, and mace-torch fine-tunes only a ScaleShiftMACE (its "
            "extract_config_mace_model, which fine-tuning uses, refuses anything else; a plain "
            "MACE would fail with KeyError 'hidden_irreps'); convert it to a ScaleShiftMACE"
        )
    try:
        config = extract_config_mace_model(model)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
        raise InvalidModelFileError(
            f"mace-torch cannot read the model's configuration for fine-tuning ({error!r})"
        ) from None
    for unsupported in ("cueq_config", "embedding_specs"):
        if config.get(unsupported) is not None:
            raise InvalidModelFileError(
                f"the model uses {unsupported}, which this service does not fine-tune from"
            )
    gate = config["gate"]
    # In the sandbox the activation is a name (sandbox_reader.NamedActivation); in the service,
    # mace's function itself. The closed GateName checks it either way.
    gate_name = None if gate is None else getattr(gate, "activation_name", gate.__name__)
    import torch

    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    fields = {
        "model_class": kind,
        "dtype": dtype,
        "r_max": float(config["r_max"]),
        "num_bessel": int(config["num_bessel"]),
        "num_polynomial_cutoff": int(config["num_polynomial_cutoff"]),
        "max_ell": int(config["max_ell"]),
        "interaction_cls": config["interaction_cls"].__name__,
        "interaction_cls_first": config["interaction_cls_first"].__name__,
        "num_interactions": int(config["num_interactions"]),
        "num_elements": int(config["num_elements"]),
        "hidden_irreps": _irreps(config["hidden_irreps"]),
        "edge_irreps": None if config["edge_irreps"] is None else _irreps(config["edge_irreps"]),
        "MLP_irreps": _irreps(config["MLP_irreps"]),
        "gate": gate_name,
        "use_reduced_cg": bool(config["use_reduced_cg"]),
        "use_so3": bool(config["use_so3"]),
        "use_edge_irreps_first": bool(config["use_edge_irreps_first"]),
        "use_agnostic_product": bool(config["use_agnostic_product"]),
        "use_last_readout_only": bool(config["use_last_readout_only"]),
        "use_embedding_readout": bool(config["use_embedding_readout"]),
        "readout_cls": config["readout_cls"].__name__,
        "atomic_energies": _floats(config["atomic_energies"]),
        "avg_num_neighbors": float(config["avg_num_neighbors"]),
        "atomic_numbers": [int(z) for z in torch.as_tensor(config["atomic_numbers"]).tolist()],
        "correlation": config["correlation"],
        "radial_type": config["radial_type"],
        "apply_cutoff": bool(config["apply_cutoff"]),
        "radial_MLP": [int(width) for width in config["radial_MLP"]],
        "pair_repulsion": bool(config["pair_repulsion"]),
        "distance_transform": config["distance_transform"],
        "atomic_inter_scale": _floats(config["atomic_inter_scale"]),
        "atomic_inter_shift": _floats(config["atomic_inter_shift"]),
        "heads": [str(head) for head in config["heads"]],
    }
    architecture = parse_architecture(json.dumps(fields))
    if not architecture.use_reduced_cg:
        return architecture
    # The flag as built (_built_in_stored_basis): the file then says which basis it holds.
    plain = architecture.model_copy(update={"use_reduced_cg": False})
    return plain if _shapes_fit(build_model(plain), model.state_dict()) else architecture


def parse_architecture(text: str) -> MaceArchitecture:
    try:
        return MaceArchitecture.model_validate_json(text)
    except ValidationError as error:
        raise InvalidModelFileError(
            f"the model's architecture is not one this service rebuilds: {_first_error(error)}"
        ) from None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"


def build_model(architecture: MaceArchitecture) -> "torch.nn.Module":
    """A ScaleShiftMACE with random weights, made by mace's own constructor from `architecture`."""
    import numpy as np
    import torch
    from mace import modules  # first: mace makes e3nn's own torch.load work under torch>=2.6
    from e3nn import o3  # isort: skip

    previous = torch.get_default_dtype()
    # mace builds buffers (ScaleShiftBlock, r_max) in the default dtype, as its trainer does.
    torch.set_default_dtype(getattr(torch, architecture.dtype))
    try:
        model = modules.ScaleShiftMACE(
            r_max=architecture.r_max,
            num_bessel=architecture.num_bessel,
            num_polynomial_cutoff=architecture.num_polynomial_cutoff,
            max_ell=architecture.max_ell,
            interaction_cls=modules.interaction_classes[architecture.interaction_cls],
            interaction_cls_first=modules.interaction_classes[architecture.interaction_cls_first],
            num_interactions=architecture.num_interactions,
            num_elements=architecture.num_elements,
            hidden_irreps=o3.Irreps(architecture.hidden_irreps),
            edge_irreps=(
                None if architecture.edge_irreps is None else o3.Irreps(architecture.edge_irreps)
            ),
            MLP_irreps=o3.Irreps(architecture.MLP_irreps),
            gate=None if architecture.gate is None else modules.gate_dict[architecture.gate],
            use_reduced_cg=architecture.use_reduced_cg,
            use_so3=architecture.use_so3,
            use_edge_irreps_first=architecture.use_edge_irreps_first,
            use_agnostic_product=architecture.use_agnostic_product,
            use_last_readout_only=architecture.use_last_readout_only,
            use_embedding_readout=architecture.use_embedding_readout,
            readout_cls=modules.readout_classes[architecture.readout_cls],
            atomic_energies=np.array(architecture.atomic_energies),
            avg_num_neighbors=architecture.avg_num_neighbors,
            atomic_numbers=list(architecture.atomic_numbers),
            correlation=architecture.correlation,
            radial_type=architecture.radial_type,
            apply_cutoff=architecture.apply_cutoff,
            radial_MLP=list(architecture.radial_MLP),
            pair_repulsion=architecture.pair_repulsion,
            distance_transform=architecture.distance_transform,
            atomic_inter_scale=np.array(architecture.atomic_inter_scale),  # type: ignore[arg-type]
            atomic_inter_shift=np.array(architecture.atomic_inter_shift),  # type: ignore[arg-type]
            heads=list(architecture.heads),
        )
    finally:
        torch.set_default_dtype(previous)
    return model.to(getattr(torch, architecture.dtype))


def facts_of(model: "torch.nn.Module", architecture: MaceArchitecture) -> ModelFacts:
    from ase.data import chemical_symbols

    symbols = [chemical_symbols[z] for z in architecture.atomic_numbers]
    energies = model.get_buffer("atomic_energies_fn.atomic_energies").detach().cpu()
    rows = energies.reshape(len(architecture.heads), len(symbols)).tolist()
    return ModelFacts(
        architecture=architecture.model_class,
        heads=list(architecture.heads),
        elements=symbols,
        e0s={
            head: dict(zip(symbols, (float(e) for e in row), strict=True))
            for head, row in zip(architecture.heads, rows, strict=True)
        },
        r_max=architecture.r_max,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        dtype=architecture.dtype,
        num_interactions=architecture.num_interactions,
    )


def write_safe_model(model: "torch.nn.Module", path: Path, source_sha256: str) -> ModelFacts:
    """Write `model` (a ScaleShiftMACE) in the safe form; `source_sha256` names the file it was
    read from. The facts written are returned."""
    from safetensors.torch import save_file

    architecture = architecture_of(model)
    facts = facts_of(model, architecture)
    # Copies: safetensors refuses tensors that share storage.
    tensors = {
        key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()
    }
    save_file(
        tensors,
        str(path),
        metadata={
            FORMAT_KEY: FORMAT,
            ARCHITECTURE_KEY: architecture.model_dump_json(),
            FACTS_KEY: facts.model_dump_json(),
            SOURCE_KEY: source_sha256,
        },
    )
    return facts


def _header(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise InvalidModelFileError("the safe model file is truncated")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_MAX_HEADER_BYTES, len(data) - 8):
        raise InvalidModelFileError("the safe model file's header is larger than the file")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:
        raise InvalidModelFileError("the safe model file's header is not JSON") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get(FORMAT_KEY) != FORMAT:
        raise InvalidModelFileError(f"the file is not a {FORMAT} safetensors file")
    return metadata


def read_header(path: Path) -> tuple[MaceArchitecture, ModelFacts, str]:
    """(architecture, facts, source sha256) from the header alone: no weight is read."""
    with path.open("rb") as stream:
        head = stream.read(8)
        (size,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
        data = head + stream.read(min(size, _MAX_HEADER_BYTES))
    return _parsed(_header(data))


def _parsed(metadata: dict[str, Any]) -> tuple[MaceArchitecture, ModelFacts, str]:
    architecture = parse_architecture(metadata.get(ARCHITECTURE_KEY, ""))
    try:
        facts = ModelFacts.model_validate_json(metadata.get(FACTS_KEY, ""))
    except ValidationError as error:
        raise InvalidModelFileError(
            f"the model's facts are malformed: {_first_error(error)}"
        ) from None
    return architecture, facts, str(metadata.get(SOURCE_KEY, ""))


def read_safe_model(data: bytes, device: str = "cpu") -> "torch.nn.Module":
    """The model a safe file holds, rebuilt by mace's constructor; its weights loaded strictly
    (a missing, extra or misshapen tensor is refused)."""
    from safetensors.torch import load as load_tensors

    architecture, _, _ = _parsed(_header(data))
    try:
        tensors = load_tensors(data)
        model = _built_in_stored_basis(architecture, tensors)
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, ValueError) as error:
        raise InvalidModelFileError(
            f"the weights do not fit the architecture: {str(error)[:300]}"
        ) from None
    return model.to(device).eval()


def _built_in_stored_basis(
    architecture: MaceArchitecture, tensors: dict[str, "torch.Tensor"]
) -> "torch.nn.Module":
    """The model in the Clebsch-Gordan basis its weights were trained in. mace-torch 0.3.16
    builds its reduced basis for `use_reduced_cg=True` (its default) only where cuequivariance
    is installed, and e3nn's basis otherwise, with fewer symmetric-contraction weights in the
    reduced one; a model saved from either says True. e3nn's basis is tried first and, when the
    weights fit it, kept with the flag False, so that mace's training process, which rebuilds
    the model from the flag, uses the same basis whatever is installed (issue 25)."""
    e3nn_basis = build_model(architecture.model_copy(update={"use_reduced_cg": False}))
    if not architecture.use_reduced_cg or _shapes_fit(e3nn_basis, tensors):
        return e3nn_basis
    return build_model(architecture)


def _shapes_fit(model: "torch.nn.Module", tensors: dict[str, "torch.Tensor"]) -> bool:
    return all(
        key in tensors and tensors[key].shape == value.shape
        for key, value in model.state_dict().items()
    )


def facts_from_json(text: str) -> ModelFacts:
    return ModelFacts.model_validate_json(text)
