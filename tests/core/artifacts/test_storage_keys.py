"""core/artifacts/storage_keys.py names every key; what it names must stay inside the store and
never give two artifacts one key."""

from core.artifacts.storage_keys import (
    CARD_FILES,
    EXPORT_FILES,
    RSS_FLAGGED_FILE,
    checked_key,
    checkpoint_key,
    checkpoint_pointer_key,
    dataset_key,
    evaluation_artifact_key,
    foundation_key,
    job_artifact_key,
    mace_log_key,
    model_key,
    prediction_key,
    readiness_probe_key,
)


def test_every_artifact_of_a_job_has_a_key_of_its_own_inside_the_job() -> None:
    keys = [
        model_key("j1"),
        model_key("j1", "multihead"),
        mace_log_key("j1"),
        checkpoint_key("j1"),
        checkpoint_pointer_key("j1"),
        job_artifact_key("j1", RSS_FLAGGED_FILE),
        *(job_artifact_key("j1", name) for name in EXPORT_FILES.values()),
        *(job_artifact_key("j1", name) for name in CARD_FILES.values()),
    ]

    assert len(set(keys)) == len(keys)
    assert all(checked_key(key).parts[:2] == ("jobs", "j1") for key in keys)


def test_keys_of_different_owners_never_meet() -> None:
    keys = [
        dataset_key("x1", "train.extxyz"),
        foundation_key("ab" * 32),
        prediction_key("x1.npz"),
        model_key("x1"),
        evaluation_artifact_key("x1", RSS_FLAGGED_FILE),
        readiness_probe_key("x1"),
    ]

    assert len({checked_key(key).parts[0] for key in keys}) == len(keys)
