"""A MACE model's buffers as typed values. nn.Module's attribute lookup types every buffer as
`Tensor | Module`; `get_buffer` returns the Tensor and names the buffer when a module lacks it."""

import torch


def atomic_numbers(model: torch.nn.Module) -> list[int]:
    """The elements the model covers, in the order of its embedding and of its E0 buffer."""
    return [int(z) for z in model.get_buffer("atomic_numbers").tolist()]


def cutoff(model: torch.nn.Module) -> float:
    """r_max, in Å."""
    return float(model.get_buffer("r_max"))


def interaction_count(model: torch.nn.Module) -> int:
    return int(model.get_buffer("num_interactions"))


def atomic_energies(model: torch.nn.Module) -> torch.Tensor:
    """The E0 buffer itself (eV): [n_elements], or [n_heads, n_elements] with several heads."""
    return model.get_buffer("atomic_energies_fn.atomic_energies")
