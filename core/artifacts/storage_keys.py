"""Every storage key and artifact file name, in one place: what the worker writes under a key is
what the api serves and the tests look for (mace keeps its key names in one DefaultKeys likewise).

Keys are relative POSIX paths that stay inside the store, whatever the backend. Both backends
(core/artifacts/storage.py, core/artifacts/s3_storage.py) import this module and neither imports
the other at module level (issue 19: no import circles).
"""

from pathlib import PurePosixPath

# Where core.workflows.training has mace-torch write its output, inside the job's working folder;
# the stored copy keeps the name.
MACE_LOG_NAME = "mace.log"
# Structures the random structure search flags as holes (core.evaluation.rss), for relabelling.
RSS_FLAGGED_FILE = "rss-holes.extxyz"
# A job's deployable exports by variant (core.science.exports), and its model card by format.
EXPORT_FILES = {"torchscript": "torchscript.pt", "lammps": "lammps.pt"}
CARD_FILES = {"json": "model-card.json", "md": "model-card.md"}


def checked_key(key: str) -> PurePosixPath:
    relative = PurePosixPath(key)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"storage key must be relative and stay inside the store: {key!r}")
    return relative


def dataset_key(dataset_id: str, file_name: str) -> str:
    return f"datasets/{dataset_id}/{file_name}"


def foundation_key(sha256: str) -> str:
    # By content: two registrations of one file share one object.
    return f"foundations/{sha256}.safetensors"


def prediction_key(file_name: str) -> str:
    return f"cache/predictions/{file_name}"


def job_artifact_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"


def model_key(job_id: str, variant: str = "model") -> str:
    return job_artifact_key(job_id, f"{variant}.model")


def mace_log_key(job_id: str) -> str:
    return job_artifact_key(job_id, MACE_LOG_NAME)


def checkpoint_key(job_id: str) -> str:
    return job_artifact_key(job_id, "checkpoint/latest.pt")


def checkpoint_pointer_key(job_id: str) -> str:
    return job_artifact_key(job_id, "checkpoint/latest.json")


def evaluation_artifact_key(evaluation_id: str, name: str) -> str:
    return f"evaluations/{evaluation_id}/{name}"


def readiness_probe_key(probe_id: str) -> str:
    return f"readiness/{probe_id}"
