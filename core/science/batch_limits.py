"""A training batch no larger than the training set.

mace drops the last, incomplete training batch of each epoch (its loader's drop_last), so a batch
size above the number of training configurations leaves no batch at all, and mace fails with an
error that does not say why. The batch shrinks to the training set instead, with a note the job
keeps (issue 26)."""

from core.science.spec import JobSpec


def batch_size_within_training_set(spec: JobSpec, n_train: int) -> tuple[JobSpec, list[str]]:
    """The spec with batch_size at most `n_train` (at least 1), and a note when it was lowered."""
    hyper = spec.hyperparameters
    if n_train < 1 or hyper.batch_size <= n_train:
        return spec, []
    lowered = with_batch_size(spec, n_train)
    note = (
        f"batch size {n_train} instead of {hyper.batch_size}: the training set holds "
        f"{n_train} configuration(s) after the split, and mace trains on full batches only"
    )
    return lowered, [note]


def with_batch_size(spec: JobSpec, batch_size: int) -> JobSpec:
    """The spec with another batch size, everything else as it was."""
    hyper = spec.hyperparameters
    return spec.model_copy(
        update={"hyperparameters": hyper.model_copy(update={"batch_size": batch_size})}
    )
