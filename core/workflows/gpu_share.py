"""Several jobs on one GPU (issue 27 item 3): a per-machine ledger of the memory each running
job reserved, and training admitted through it.

Workers of one machine (Celery's prefork children, or several worker processes) share the GPU
but nothing else, so the ledger is a JSON file under an exclusive file lock, one per device;
a reservation whose process is gone (a killed worker) is dropped when the ledger is next read.
"""

import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from core.errors import TrainingFailedError
from core.science.gpu_admission import (
    Reservation,
    admit,
    planned_capacity_mb,
    predicted_peak_mb,
    ran_out_of_memory,
)
from core.service.stages import WorkStopped

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0


class GpuLedger:
    """Reservations on one device, shared by the processes of this machine."""

    def __init__(self, path: Path, capacity_mb: float) -> None:
        self.path = path
        self.capacity_mb = capacity_mb
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries = json.loads(self.path.read_text()) if self.path.is_file() else {}
                entries = {key: e for key, e in entries.items() if _alive(e["pid"])}
                yield entries
                partial = self.path.with_suffix(".partial")
                partial.write_text(json.dumps(entries))
                partial.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def held(self) -> list[Reservation]:
        with self._locked() as entries:
            return [_reservation(key, entry) for key, entry in entries.items()]

    def try_reserve(self, request: Reservation) -> tuple[bool, str, int]:
        """(admitted, why, how many other jobs hold the device)."""
        with self._locked() as entries:
            held = [_reservation(key, entry) for key, entry in entries.items()]
            admission = admit(self.capacity_mb, held, request)
            if admission.admitted:
                entries[request.job_id] = {**request.to_dict(), "pid": os.getpid()}
            others = sum(r.job_id != request.job_id for r in held)
            return admission.admitted, admission.reason, others

    def release(self, job_id: str) -> None:
        with self._locked() as entries:
            entries.pop(job_id, None)

    @contextmanager
    def reserved(
        self, request: Reservation, should_stop: Callable[[], bool], poll: float = POLL_SECONDS
    ) -> Iterator[int]:
        """Wait until `request` is admitted (or the job is stopped); yields how many other jobs
        share the device."""
        logged = False
        while True:
            admitted, reason, others = self.try_reserve(request)
            if admitted:
                break
            if not logged:
                logger.info("job=%s waits for GPU memory: %s", request.job_id, reason)
                logged = True
            if should_stop():
                raise WorkStopped("waiting for GPU memory")
            time.sleep(poll)
        try:
            yield others
        finally:
            self.release(request.job_id)


def _reservation(job_id: str, entry: dict[str, Any]) -> Reservation:
    return Reservation(job_id, float(entry["mb"]), bool(entry.get("exclusive")))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def device_ledger(device: str, folder: Path | None = None) -> GpuLedger:
    index = torch.device(device).index or 0
    total = torch.cuda.get_device_properties(index).total_memory
    root = folder or Path(tempfile.gettempdir()) / "mlft-gpu-ledger"
    return GpuLedger(root / f"cuda{index}.json", planned_capacity_mb(total))


def train_sharing_the_device(
    train: Callable[[], None],
    *,
    job_id: str,
    device: str,
    probe_peak_mb: float | None,
    should_stop: Callable[[], bool],
    ledger: GpuLedger | None = None,
) -> dict[str, Any] | None:
    """Run `train` once the device's ledger admits the job's predicted peak; a run that ran out of
    memory beside other jobs is run again alone (mace resumes from its last checkpoint).
    Returns what the job records of it (None on a CPU)."""
    if ledger is None:
        if not device.startswith("cuda") or not torch.cuda.is_available():
            train()  # a CPU's jobs are one per worker process, by Celery's concurrency
            return None
        ledger = device_ledger(device)
    request = Reservation(job_id, predicted_peak_mb(probe_peak_mb))
    record: dict[str, Any] = {"reserved_mb": round(request.mb, 1), "retried_alone": False}
    try:
        with ledger.reserved(request, should_stop) as others:
            record["sharing_with"] = others
            train()
        return record
    except TrainingFailedError as error:
        if not (ran_out_of_memory(str(error)) and record.get("sharing_with")):
            raise
        logger.warning("job=%s ran out of GPU memory beside others; retried alone", job_id)
    exclusive = Reservation(job_id, request.mb, exclusive=True)
    with ledger.reserved(exclusive, should_stop):
        train()
    return {**record, "retried_alone": True}
