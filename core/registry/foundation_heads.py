"""The single-head, float64 foundation a job works with, made from the registered file.

Multi-head foundations carry one readout (and one row of E0s, one scale and shift) per level of
theory. mace-torch 0.3.16 fine-tunes one of them with `--foundation_head=<head>`, which does
nothing but `mace.tools.scripts_utils.remove_pt_head(model, head)` on the loaded foundation. The
service does that step itself, before anything else touches the foundation: the preflight, the E0
estimate, `core.science.e0s.with_e0s` (which writes head 0) and the pseudolabels must all see the
chosen head, so mace is handed the single-head file and never needs the flag.

Float32 files are widened to float64, as mace's `--default_dtype=float64` training widens them:
E0s written into a float32 buffer would lose their meV digits, and the frozen-weight check compares
bits against what mace trained from.
"""

from pathlib import Path

import torch

from core.registry.catalogue import file_sha256
from core.registry.heads import choose_head
from core.registry.loading import FoundationModel
from core.registry.safe_model import write_safe_model


def heads_of(model: torch.nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "heads", None) or ("Default",))


def keep_head(model: torch.nn.Module, head: str) -> torch.nn.Module:
    """A single-head copy of a multi-head mace model holding `head` alone (its E0s, scale, shift
    and readout channels); the model itself when it has one head."""
    if len(heads_of(model)) <= 1:
        return model
    from mace.tools.scripts_utils import remove_pt_head

    # remove_pt_head builds the new model in torch's default dtype, which must be the model's.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(next(model.parameters()).dtype)
    try:
        return remove_pt_head(model, head)
    finally:
        torch.set_default_dtype(previous)


def working_foundation(
    foundation: FoundationModel,
    model: torch.nn.Module,
    requested_head: str | None,
    work_dir: Path,
) -> tuple[FoundationModel, torch.nn.Module, str]:
    """(file, module, head) of the foundation as a job uses it: single-head, float64.

    When the registered file already is that, it is returned unchanged. Otherwise its safe form
    is written into `work_dir` and pinned by its own sha256 (so the one checked loader,
    `core.registry.loading.load_foundation`, loads it like a registered file), which also keeps
    prediction caches of different heads apart.
    """
    head = choose_head(foundation.name, heads_of(model), requested_head)
    dtype = next(model.parameters()).dtype
    if len(heads_of(model)) <= 1 and dtype == torch.float64:
        return foundation, model, head
    working = keep_head(model, head).to(torch.float64).eval()
    path = work_dir / f"foundation-{head}-float64.safetensors"
    work_dir.mkdir(parents=True, exist_ok=True)
    write_safe_model(working, path, source_sha256=foundation.sha256)
    return FoundationModel(foundation.name, path, file_sha256(path)), working, head
