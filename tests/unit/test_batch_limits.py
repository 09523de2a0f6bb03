"""Issue 26 item 5: a batch larger than the training set is lowered to it, with a note, instead of
leaving mace (which trains on full batches only) without a single batch."""

import ast
from pathlib import Path

from core.science.batch_limits import batch_size_within_training_set
from core.science.spec import JobSpec
from tests.conftest import REPO_ROOT

SPEC = JobSpec(train_dataset="a" * 32, hyperparameters={"batch_size": 8})


def test_a_batch_larger_than_the_training_set_becomes_the_training_set_with_a_note() -> None:
    lowered, notes = batch_size_within_training_set(SPEC, 3)

    assert lowered.hyperparameters.batch_size == 3
    assert notes == [
        "batch size 3 instead of 8: the training set holds 3 configuration(s) after the split, "
        "and mace trains on full batches only"
    ]
    assert SPEC.hyperparameters.batch_size == 8  # the stored spec is not changed


def test_a_batch_within_the_training_set_is_left_alone() -> None:
    for n_train in (8, 9, 500):
        assert batch_size_within_training_set(SPEC, n_train) == (SPEC, [])


def test_the_split_stage_lowers_the_batch_to_the_training_set_it_made() -> None:
    # The split is where the training set's size is first known: the lowering must happen there.
    source = Path(REPO_ROOT, "core/workflows/training.py").read_text()
    split_stage = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "_split"
    )
    called = {
        node.func.id
        for node in ast.walk(split_stage)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "batch_size_within_training_set" in called
