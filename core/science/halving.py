"""Successive halving over a sweep's jobs (issue 27 item 4): the rule, as pure functions.

At rungs (after a third and two thirds of the epochs) each job's validation force RMSE is
ranked among the sweep's jobs that reached the same rung; a job outside the top 1/η that is also
clearly behind the best (by more than CLEARLY_BEHIND) stops there. This is asynchronous successive
halving (ASHA, Li et al. 2020, with Hyperband's η = 3): a job is judged against the jobs that
got to its rung before it, so a worker never waits for its siblings; a job with none ahead of
it goes on.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

ETA = 3
RUNG_FRACTIONS = (1 / 3, 2 / 3)
# "Clearly behind": its error above the best at the rung by more than this share. Jobs that close
# are left to finish: the noise of one validation pass on small data is of this order.
CLEARLY_BEHIND = 0.10
# Sweeps of this many jobs or more stop losers by default (fewer: too few to rank).
DEFAULT_MIN_JOBS = 4
METRIC = "valid_forces_rmse_mev_per_a"

RULE = (
    f"successive halving (η = {ETA}): after {round(RUNG_FRACTIONS[0] * 3)}/3 and "
    f"{round(RUNG_FRACTIONS[1] * 3)}/3 of the epochs a job goes on when its validation force RMSE "
    f"ranks in the top 1/{ETA} of the sweep's jobs at that point, or is within "
    f"{CLEARLY_BEHIND:.0%} of the best; otherwise it stops (state stopped_early, its model and "
    "learning curve kept, no evaluation)"
)


@dataclass(frozen=True)
class Verdict:
    after_epochs: int
    stop: bool
    value: float
    best: float
    rank: int
    ranked: int
    keep: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def early_stopping_applies(setting: bool | None, n_jobs: int) -> bool:
    """The sweep's own choice, or on by default from DEFAULT_MIN_JOBS jobs."""
    return setting if setting is not None else n_jobs >= DEFAULT_MIN_JOBS


def rung_epochs(max_epochs: int) -> list[int]:
    """After how many epochs the rungs judge (never before the first nor at the last)."""
    return sorted({round(f * max_epochs) for f in RUNG_FRACTIONS} & set(range(1, max_epochs)))


def judge(after_epochs: int, own: float, others: Sequence[float]) -> Verdict:
    """Whether the job whose error at the rung is `own` stops, given the errors of the jobs that
    reached the rung before it (`others`)."""
    values = [*others, own]
    rank = 1 + sum(value < own for value in others)
    keep = max(1, math.ceil(len(values) / ETA))
    best = min(values)
    if rank <= keep:
        return Verdict(
            after_epochs, False, own, best, rank, len(values), keep,
            f"rank {rank} of {len(values)} (the top {keep} go on)",
        )  # fmt: skip
    if own <= best * (1 + CLEARLY_BEHIND):
        return Verdict(
            after_epochs, False, own, best, rank, len(values), keep,
            f"rank {rank} of {len(values)} but within {CLEARLY_BEHIND:.0%} of the best "
            f"({own:.3g} vs {best:.3g} meV/Å)",
        )  # fmt: skip
    return Verdict(
        after_epochs, True, own, best, rank, len(values), keep,
        f"after {after_epochs} epochs: validation force RMSE {own:.3g} meV/Å ranks {rank} of "
        f"{len(values)} (the top {keep} go on) and is {own / best - 1:.0%} above the best "
        f"{best:.3g} meV/Å",
    )  # fmt: skip


def value_after(epochs: Sequence[dict], after_epochs: int) -> float | None:
    """A job's validation force RMSE after `after_epochs` epochs, from its learning curve (mace
    numbers epochs from 0; the replay head's records do not count)."""
    for entry in epochs:
        if entry.get("epoch") == after_epochs - 1 and entry.get("head") != "replay":
            value = entry.get(METRIC)
            if isinstance(value, int | float) and math.isfinite(value):
                return float(value)
    return None
