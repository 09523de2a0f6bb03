"""How many edges one forward or training pass may hold: from the device's free memory on a GPU.

A MACE pass grows with edges (neighbour pairs within r_max), so one number bounds every batched
pass of a job: training (half of it: core.workflows.mace_inputs.TRAINING_EDGE_SHARE), preflight,
E0 estimation, evaluation, MD and the random-structure-search relaxations. On a CPU it stays
MLFT_MAX_EDGES_PER_BATCH (30k edges, well under 1 GB); on a GPU it comes from the memory free
on the device and the bytes one edge costs in a training step, which the cost probe measures
(core.science.cost), with a safety margin. Setting MLFT_MAX_EDGES_PER_BATCH overrides both.

The functions here are pure: the numbers come in, the budget and its reason go out, so tests
check them with given numbers on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Of the memory free when the job starts, this share is planned for: the allocator's
# fragmentation, mace's data loader and the validation pass need the rest.
SAFETY_MARGIN = 0.7
# mace-torch's training step at MACE-MP-0-small size in float64 (forces in the loss, a double
# backward pass): about 200 kB per edge, measured on the CPU probe. Used until a probe measured it.
DEFAULT_BYTES_PER_EDGE = 200_000
# A GPU budget never drops below the CPU default (a probe's noise must not make a GPU job slower
# than the CPU one) nor grows past what one pass can index cheaply.
MAX_DEVICE_EDGES = 20_000_000
# The batch-size curve: a larger batch must raise throughput by at least this share to count as
# still climbing; at or past PICK_MEMORY_SHARE of the device's memory the curve stops anyway.
PLATEAU_GAIN = 0.05
PICK_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class EdgeBudget:
    edges: int
    source: str  # "setting", "cpu_default" or "device_memory"
    reason: str
    free_memory_mb: float | None = None
    bytes_per_edge: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def choose_edge_budget(
    *,
    device: str,
    default_edges: int,
    override: int | None = None,
    free_bytes: int | None = None,
    bytes_per_edge: float | None = None,
    reserved_bytes: int | None = None,
    training_share: float = 0.5,
) -> EdgeBudget:
    """The edge budget of one job and why.

    `override`: MLFT_MAX_EDGES_PER_BATCH when the operator set it. `free_bytes`: the device's
    free memory now; `reserved_bytes`: what this job was admitted with on a shared GPU (the
    budget then plans within that, core.science.gpu_admission). `bytes_per_edge`: one edge's
    share of a training step's peak, from the cost probe. `training_share`: the part of the
    budget a training batch may hold (the rest is headroom for the cheaper predictions).
    """
    if override is not None:
        return EdgeBudget(
            override, "setting", f"MLFT_MAX_EDGES_PER_BATCH={override} is set: it is used as is"
        )
    if not device.startswith("cuda") or free_bytes is None:
        return EdgeBudget(
            default_edges,
            "cpu_default",
            f"{device}: the default of {default_edges} edges per pass (a CPU's memory is not "
            "measured)",
        )
    per_edge = bytes_per_edge if bytes_per_edge and bytes_per_edge > 0 else DEFAULT_BYTES_PER_EDGE
    usable = free_bytes if reserved_bytes is None else min(free_bytes, reserved_bytes)
    training_edges = SAFETY_MARGIN * usable / per_edge
    edges = int(min(MAX_DEVICE_EDGES, max(default_edges, training_edges / training_share)))
    measured = "measured by the cost probe" if bytes_per_edge else "the default estimate"
    limit = "free on the device" if reserved_bytes is None else "reserved for this job"
    return EdgeBudget(
        edges,
        "device_memory",
        f"{usable / 2**20:.0f} MB {limit} × safety margin {SAFETY_MARGIN:g} / "
        f"{per_edge / 1e3:.0f} kB per training edge ({measured}) = {int(training_edges)} "
        f"edges per training batch; {edges} per prediction pass",
        free_memory_mb=free_bytes / 2**20,
        bytes_per_edge=per_edge,
    )


def bytes_per_edge(peak_bytes: float, baseline_bytes: float, edges: int) -> float | None:
    """One edge's share of a training step's peak memory above what was held before it."""
    if edges <= 0 or peak_bytes <= baseline_bytes:
        return None
    return (peak_bytes - baseline_bytes) / edges


@dataclass(frozen=True)
class CurvePoint:
    batch_size: int
    atoms_per_second: float
    memory_share: float  # peak memory of the step / the device's total memory


@dataclass(frozen=True)
class CurvePick:
    batch_size: int
    reason: str


def pick_batch_size(curve: Sequence[CurvePoint]) -> CurvePick:
    """The batch size to train at from a measured curve batch size → atoms/s: the first point
    where doubling stops paying (less than PLATEAU_GAIN more throughput) or that uses at least
    PICK_MEMORY_SHARE of the device's memory, whichever comes first; the largest otherwise."""
    if not curve:
        raise ValueError("an empty batch-size curve has no pick")
    points = sorted(curve, key=lambda point: point.batch_size)
    for index, point in enumerate(points):
        if point.memory_share >= PICK_MEMORY_SHARE:
            return CurvePick(
                point.batch_size,
                f"batch {point.batch_size} uses {point.memory_share:.0%} of the device's "
                f"memory (≥ {PICK_MEMORY_SHARE:.0%})",
            )
        following = points[index + 1] if index + 1 < len(points) else None
        if following is not None and following.atoms_per_second < point.atoms_per_second * (
            1 + PLATEAU_GAIN
        ):
            return CurvePick(
                point.batch_size,
                f"plateau: batch {following.batch_size} gains less than {PLATEAU_GAIN:.0%} "
                f"over batch {point.batch_size} ({following.atoms_per_second:.0f} vs "
                f"{point.atoms_per_second:.0f} atoms/s)",
            )
    last = points[-1]
    return CurvePick(last.batch_size, f"largest measured batch {last.batch_size}: still climbing")
