"""Which jobs share a GPU (issue 27 item 3): admission by predicted peak memory, as pure functions.

A job asks for its predicted peak (the cost probe's, core.science.cost, plus the CUDA context of
mace's training process); it is admitted when every job already on the device and it fit the
device's planned memory together. A job alone is always admitted (the GPU is its whole), and a
job that ran out of memory beside others is retried exclusively: no job starves another into an
out-of-memory error twice.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Each training process holds its own CUDA context and allocator pools besides what the probe's
# tensors measure: about 0.5 GB on an H100 with torch 2.x, rounded up.
CUDA_CONTEXT_MB = 700.0
# Of the device's total memory, this share is planned for (the rest: fragmentation, the worker's
# own models for preflight and evaluation).
DEVICE_SHARE = 0.9
# A job whose probe measured nothing (scratch, no probe) plans for this much.
UNKNOWN_PEAK_MB = 4096.0
OUT_OF_MEMORY_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "CUBLAS_STATUS_ALLOC_FAILED")


@dataclass(frozen=True)
class Reservation:
    job_id: str
    mb: float
    exclusive: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Admission:
    admitted: bool
    reason: str


def planned_capacity_mb(total_bytes: int) -> float:
    return DEVICE_SHARE * total_bytes / 2**20


def predicted_peak_mb(probe_peak_mb: float | None) -> float:
    """What a job reserves: the probe's peak (tensors) plus its process's CUDA context."""
    return (probe_peak_mb if probe_peak_mb else UNKNOWN_PEAK_MB) + CUDA_CONTEXT_MB


def admit(capacity_mb: float, held: Sequence[Reservation], request: Reservation) -> Admission:
    """Whether `request` may start beside the reservations `held` on a device planned at
    `capacity_mb`."""
    others = [r for r in held if r.job_id != request.job_id]
    if not others:
        return Admission(True, "alone on the device")
    if request.exclusive:
        return Admission(False, f"waits to run alone: {len(others)} job(s) on the device")
    if any(r.exclusive for r in others):
        return Admission(False, "a job runs alone on the device (retried after running out)")
    used = sum(r.mb for r in others)
    if used + request.mb <= capacity_mb:
        return Admission(
            True,
            f"{request.mb:.0f} MB beside {len(others)} job(s) holding {used:.0f} MB of "
            f"{capacity_mb:.0f} MB",
        )
    return Admission(
        False,
        f"{request.mb:.0f} MB does not fit beside {used:.0f} MB held of {capacity_mb:.0f} MB",
    )


def ran_out_of_memory(message: str) -> bool:
    return any(marker in message for marker in OUT_OF_MEMORY_MARKERS)


def jobs_that_fit(capacity_mb: float, peaks_mb: Sequence[float]) -> int:
    """How many jobs of these predicted peaks (in order) run at once on one device."""
    held: list[Reservation] = []
    for index, mb in enumerate(peaks_mb):
        request = Reservation(str(index), mb)
        if not admit(capacity_mb, held, request).admitted:
            break
        held.append(request)
    return len(held)
