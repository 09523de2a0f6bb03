"""Many relaxations spread over processes, each process with its own calculator, built there by
a picklable factory; a process that dies takes only its own task with it."""

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import current_process, get_context

from ase.calculators.calculator import Calculator
from threadpoolctl import threadpool_limits

from core.evaluation.relaxation import Relaxed, RelaxSettings, StartingStructure, relax_rattle
from core.registry.foundations import ModelSource, load_model_source
from core.science.cueq import inference_uses_cueq

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
WORKER_FAILURE = "worker process failed"


@dataclass(frozen=True)
class MaceCalculatorFactory:
    """Builds the model's ASE calculator inside each worker process (picklable)."""

    # A registered foundation (checked against its pin in each process) or a job's model.
    model: ModelSource
    device: str = "cpu"

    def __call__(self) -> Calculator:
        from mace.calculators import MACECalculator

        model = load_model_source(self.model, self.device)
        return MACECalculator(
            models=model,
            device=self.device,
            default_dtype="float64",
            enable_cueq=inference_uses_cueq(self.device),
        )


_process_calculator: Calculator | None = None


@contextmanager
def single_threaded() -> Iterator[None]:
    """One thread for torch and for BLAS while a few-atom structure relaxes.

    The cell filter's 3×3 matrix exponentials and a MACE pass over a handful of atoms are far too
    small to share: with threads on a busy machine a step took 50× longer (measured: 0.8 s
    against 15 ms for 4 atoms of the demo model on a loaded 2-core machine). Parallelism comes
    from processes instead.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(previous)


def _start_process(factory: Callable[[], Calculator]) -> None:
    global _process_calculator
    threadpool_limits(1)  # for the life of this worker process
    _process_calculator = factory()
    torch = sys.modules.get("torch")  # loaded by a MACE calculator; not worth importing otherwise
    if torch is not None:
        torch.set_num_threads(1)


def _relax_in_process(
    start: StartingStructure, pressure: float, settings: RelaxSettings
) -> Relaxed:
    assert _process_calculator is not None
    return relax_rattle(start, _process_calculator, pressure, settings)


def relax_all(
    structures: Sequence[StartingStructure],
    calculator_factory: Callable[[], Calculator],
    settings: RelaxSettings,
    *,
    processes: int | None = 1,
    on_progress: ProgressCallback | None = None,
) -> list[Relaxed]:
    """Every structure at every pressure, in a stable order; `processes` None uses every core."""
    tasks = [(s, p) for p in settings.pressures_gpa for s in structures]
    report = on_progress or (lambda _done, _total: None)
    workers = min(processes or os.cpu_count() or 1, max(1, len(tasks)))
    if workers > 1 and current_process().daemon:
        # A daemonic process (a prefork Celery child) may not start processes of its own.
        logger.warning("rss: running in a daemonic process; relaxing in one process")
        workers = 1
    results: list[Relaxed | None] = [None] * len(tasks)
    if workers == 1:
        calculator = calculator_factory()
        for position, (start, pressure) in enumerate(tasks):
            with single_threaded():
                results[position] = relax_rattle(start, calculator, pressure, settings)
            report(position + 1, len(tasks))
        return [r for r in results if r is not None]
    # spawn, not fork: a forked copy of a process that already ran torch's thread pools can hang.
    with ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_start_process,
        initargs=(calculator_factory,),
    ) as pool:
        futures = {
            pool.submit(_relax_in_process, start, pressure, settings): position
            for position, (start, pressure) in enumerate(tasks)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            position = futures[future]
            try:
                results[position] = future.result()
            except Exception as error:  # a worker process that died takes its task with it
                start, pressure = tasks[position]
                results[position] = Relaxed(
                    start.composition,
                    start.index,
                    pressure,
                    start.space_group,
                    failure=f"{WORKER_FAILURE}: {type(error).__name__}: {error}",
                )
            report(done, len(tasks))
    return [r for r in results if r is not None]


def lost_with_worker(relaxed: Relaxed) -> bool:
    """The relaxation failed because its worker process died: the machine's fault, not the
    model's."""
    return relaxed.failure is not None and relaxed.failure.startswith(WORKER_FAILURE)
