"""A section of the evaluation that cannot run is recorded with its reason, never fatal (issue 25).

The model is delivered before it is evaluated; elements it does not know, memory, or a crash
inside ASE or mace-torch in one section must not turn a delivered job into a failed one. Each
section runs through `attempt`, which returns its result or records "not measured: <reason>" in
the report's `not_measured` (section name -> reason) and lets the other sections run.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import ase
import torch
from ase.data import chemical_symbols

from core.registry import mace_model
from core.service.stages import WorkStopped

logger = logging.getLogger(__name__)
T = TypeVar("T")


class NotMeasurable(Exception):
    """A section that cannot run for a reason known before it starts (elements, no data)."""


def unknown_elements(model: torch.nn.Module, configs: Sequence[ase.Atoms]) -> list[str]:
    """Elements of `configs` that `model` has no embedding for, by atomic number."""
    known = set(mace_model.atomic_numbers(model))
    numbers = {int(z) for atoms in configs for z in atoms.numbers}
    return [chemical_symbols[z] for z in sorted(numbers - known)]


def require_known_elements(
    models: Mapping[str, torch.nn.Module | None], configs: Sequence[ase.Atoms], data: str
) -> None:
    """NotMeasurable when a model (by its name in the report) lacks an element of `configs`."""
    for name, model in models.items():
        if model is None:
            continue
        missing = unknown_elements(model, configs)
        if missing:
            covered = ", ".join(chemical_symbols[z] for z in mace_model.atomic_numbers(model))
            raise NotMeasurable(
                f"the {name} does not know element(s) {', '.join(missing)} of the {data} "
                f"(it knows {covered})"
            )


def reason_of(error: BaseException) -> str:
    """What the report says about a section that stopped with `error`."""
    if isinstance(error, NotMeasurable):
        return str(error)
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return f"out of memory ({type(error).__name__}: {error})".replace(": )", ")")
    return f"failed with {type(error).__name__}: {error}"


def attempt(section: str, not_measured: dict[str, str], compute: Callable[[], T]) -> T | None:
    """`compute()`, or None with the reason recorded under `section` in `not_measured`. Work
    stopped (cancelled, lease lost) is not a section's failure and goes on up."""
    try:
        return compute()
    except WorkStopped:
        raise
    except (Exception, MemoryError) as error:
        not_measured[section] = reason_of(error)
        if isinstance(error, NotMeasurable):
            logger.info("%s not measured: %s", section, error)
        else:
            logger.exception("%s not measured: %s", section, not_measured[section])
        return None
