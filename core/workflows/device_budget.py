"""The edge budget a job runs with, measured on its device when it starts (issue 27 item 1)."""

import logging
from collections.abc import Sequence

import ase
import torch

from core.config import get_settings
from core.science.cost import probe_cost
from core.science.edge_budget import EdgeBudget, choose_edge_budget
from core.science.inference import use_edge_budget
from core.science.spec import JobSpec

logger = logging.getLogger(__name__)


def edge_budget_override() -> int | None:
    """MLFT_MAX_EDGES_PER_BATCH when the operator set it (its default is the CPU's budget)."""
    settings = get_settings()
    if "max_edges_per_batch" in settings.model_fields_set:
        return settings.max_edges_per_batch
    return None


def job_edge_budget(
    spec: JobSpec,
    configs: Sequence[ase.Atoms],
    model: torch.nn.Module | None,
    device: str,
    reserved_bytes: int | None = None,
) -> EdgeBudget:
    """Choose the job's budget and bound this process's passes by it.

    On a GPU the cost probe trains the job's model for a few steps on its first configurations
    to measure one edge's memory (seconds on a GPU; a scratch model, not built yet, uses the
    default estimate); the device's free memory is read after it released what it held."""
    settings = get_settings()
    override = edge_budget_override()
    free = per_edge = None
    if override is None and device.startswith("cuda") and torch.cuda.is_available():
        if model is not None and configs:
            estimate = probe_cost(
                spec,
                model,
                list(configs[: spec.hyperparameters.batch_size]),
                n_valid=0,
                n_train=len(configs),
                device=device,
            )
            per_edge = estimate.bytes_per_edge
        torch.cuda.empty_cache()
        free, _total = torch.cuda.mem_get_info(torch.device(device))
    budget = choose_edge_budget(
        device=device,
        default_edges=settings.max_edges_per_batch,
        override=override,
        free_bytes=free,
        bytes_per_edge=per_edge,
        reserved_bytes=reserved_bytes,
    )
    use_edge_budget(budget.edges)
    logger.info("edge budget %d (%s): %s", budget.edges, budget.source, budget.reason)
    return budget
