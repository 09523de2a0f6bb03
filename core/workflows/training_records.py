"""What a training job reports and hands back: its progress hooks, its files, its result, and the
split as the job records it."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import ase

from core.data.label_values import is_isolated_atom
from core.data.splits import Split
from core.science.e0s import E0Fit
from core.science.exports import ExportResult
from core.science.replay import ReplayFile


class Progress(Protocol):
    """What a job reports while it runs. Progress objects that keep a record (a job's row) may
    also define `preflight(report, cost)`, `e0s_chosen(e0s)`, `steps(stage, done, total)` and
    `trained(result)`; run_training calls those it finds. A job of a sweep that stops losers
    early also has `rungs` (a RungPlan) and `job_id`."""

    def stage(self, name: str) -> None: ...

    def epoch(self, entry: dict) -> None: ...

    def should_stop(self) -> bool: ...


def notify(progress: Progress, hook: str, *args: Any) -> None:
    # Optional hooks: benchmarks and tests pass progress objects that record only stages.
    method = getattr(progress, hook, None)
    if method is not None:
        method(*args)


@dataclass(frozen=True)
class JobFiles:
    train: Path
    valid: Path | None = None
    test: Path | None = None
    isolated_atoms: Path | None = None
    replay: Path | None = None
    # Evaluation only: pretraining-like data for the forgetting ratio, and RDF reference data.
    forgetting: Path | None = None
    reference: Path | None = None


@dataclass(frozen=True)
class TrainingResult:
    # Single head, LoRA merged: what a user downloads for an ASE calculator.
    model_path: Path
    e0_fit: E0Fit
    isolated_atom_energies: dict[str, float]
    # The report sections of core.evaluation.suite (accuracy, forgetting, md, rdf, dimers).
    evaluation: dict[str, Any]
    checks: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Replay strategies: the full model with its replay head, and how the replay set was made.
    multihead_model_path: Path | None = None
    replay: ReplayFile | None = None
    # Issue 9: the preflight report, which configuration went where, cost predicted vs actual,
    # and the export variants that passed or failed their check.
    preflight: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    exports: list[ExportResult] = field(default_factory=list)
    # {name, sha256, head} of the foundation fine-tuned; None for scratch.
    foundation: dict[str, str] | None = None
    # Further files the job delivers, by file name (the random-structure-search holes).
    artifacts: dict[str, Path] = field(default_factory=dict)
    # Issue 27: a sweep's successive halving stopped its training at a rung (not evaluated).
    stopped_early: bool = False


def recorded_split(
    split: Split, dataset_indices: list[int], set_aside: dict[str, list[int]] | None = None
) -> dict[str, Any]:
    """The split in positions of the training dataset's configurations (0-based), with every
    configuration left out of it named under `set_aside` and counted."""
    record = split.to_dict()
    for side in ("train", "valid", "test", "duplicates_removed"):
        record[side] = [dataset_indices[i] for i in record[side]]
    record["set_aside"] = set_aside or {}
    for reason, indices in record["set_aside"].items():
        record["counts"][reason] = len(indices)
    return record


def set_aside_configurations(
    configs: list[ase.Atoms], candidates: list[int], chosen: list[int]
) -> dict[str, list[int]]:
    """Dataset positions kept out of the split, by reason: isolated atoms (E0 references, not
    trained on) and configurations train_fraction did not sample."""
    picked = {candidates[i] for i in chosen}
    return {
        "isolated_atoms": [i for i, atoms in enumerate(configs) if is_isolated_atom(atoms)],
        "not_sampled": [i for i in candidates if i not in picked],
    }
