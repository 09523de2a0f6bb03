"""Several jobs on one GPU: admission by predicted peak, the machine's ledger, and a job that ran
out of memory beside others retried alone (issue 27 item 3). No GPU needed: the ledger's
capacity is given."""

import subprocess
import sys
import threading
import time

import pytest

from core.errors import TrainingFailedError
from core.science.gpu_admission import (
    CUDA_CONTEXT_MB,
    Reservation,
    admit,
    jobs_that_fit,
    predicted_peak_mb,
    ran_out_of_memory,
)
from core.workflows.gpu_share import GpuLedger, train_sharing_the_device


def test_jobs_are_admitted_while_their_predicted_peaks_fit_together() -> None:
    held = [Reservation("a", 30_000), Reservation("b", 30_000)]

    assert admit(100_000, held, Reservation("c", 30_000)).admitted
    refused = admit(100_000, held, Reservation("c", 50_000))
    assert not refused.admitted and "does not fit" in refused.reason


def test_a_job_alone_is_admitted_whatever_its_peak_and_exclusive_jobs_run_alone() -> None:
    assert admit(1_000, [], Reservation("big", 9_999)).admitted
    assert not admit(100_000, [Reservation("a", 10)], Reservation("b", 10, exclusive=True)).admitted
    assert not admit(100_000, [Reservation("a", 10, exclusive=True)], Reservation("b", 10)).admitted


def test_eight_demo_sized_jobs_fit_an_h200_and_the_peak_includes_a_cuda_context() -> None:
    demo = predicted_peak_mb(1_200.0)

    assert demo == 1_200.0 + CUDA_CONTEXT_MB
    assert jobs_that_fit(0.9 * 139 * 1024, [demo] * 8) == 8
    assert jobs_that_fit(0.9 * 139 * 1024, [60_000.0] * 8) == 2


def test_cuda_out_of_memory_messages_are_recognised() -> None:
    assert ran_out_of_memory("mace-torch training exited with code 1: torch.OutOfMemoryError: x")
    assert not ran_out_of_memory("mace-torch training exited with code 1: KeyError")


def test_the_ledger_refuses_what_does_not_fit_and_forgets_a_dead_process(tmp_path) -> None:
    ledger = GpuLedger(tmp_path / "cuda0.json", capacity_mb=10_000)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert ledger.try_reserve(Reservation("mine", 4_000))[0]
        # Another worker's reservation, as that worker writes it.
        other = GpuLedger(ledger.path, ledger.capacity_mb)
        with other._locked() as entries:
            entries["theirs"] = {"job_id": "theirs", "mb": 5_000, "exclusive": False}
            entries["theirs"]["pid"] = holder.pid
        admitted, reason, others = ledger.try_reserve(Reservation("third", 2_000))
        assert not admitted and others == 2, reason
    finally:
        holder.kill()
        holder.wait()

    assert ledger.try_reserve(Reservation("third", 2_000))[0]
    assert {r.job_id for r in ledger.held()} == {"mine", "third"}


def test_a_job_that_ran_out_of_memory_beside_another_is_retried_alone(tmp_path) -> None:
    ledger = GpuLedger(tmp_path / "cuda0.json", capacity_mb=100_000)
    ledger.try_reserve(Reservation("neighbour", 1_000))
    runs: list[list[str]] = []

    def train() -> None:
        runs.append([r.job_id for r in ledger.held()])
        if len(runs) == 1:
            # The neighbour ends soon after; the retry must wait for it.
            threading.Timer(0.3, ledger.release, args=("neighbour",)).start()
            raise TrainingFailedError("mace-torch training exited with code 1: CUDA out of memory")

    started = time.monotonic()
    record = train_sharing_the_device(
        train, job_id="job", device="cuda", probe_peak_mb=500.0, should_stop=lambda: False,
        ledger=ledger,
    )  # fmt: skip

    assert sorted(runs[0]) == ["job", "neighbour"]
    assert runs[1] == ["job"]
    assert record == {
        "reserved_mb": 500.0 + CUDA_CONTEXT_MB,
        "retried_alone": True,
        "sharing_with": 1,
    }
    assert time.monotonic() - started >= 0.3
    assert ledger.held() == []


def test_a_job_alone_that_fails_is_not_retried(tmp_path) -> None:
    ledger = GpuLedger(tmp_path / "cuda0.json", capacity_mb=100_000)

    def train() -> None:
        raise TrainingFailedError("mace-torch training exited with code 1: CUDA out of memory")

    with pytest.raises(TrainingFailedError):
        train_sharing_the_device(
            train, job_id="job", device="cuda", probe_peak_mb=None, should_stop=lambda: False,
            ledger=ledger,
        )  # fmt: skip
    assert ledger.held() == []


def test_on_a_cpu_the_job_trains_without_a_ledger() -> None:
    runs = []

    record = train_sharing_the_device(
        lambda: runs.append(1), job_id="job", device="cpu", probe_peak_mb=None,
        should_stop=lambda: False,
    )  # fmt: skip

    assert runs == [1] and record is None
