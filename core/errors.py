"""Typed domain errors; `api/errors.py` maps them to HTTP status codes and machine-readable
codes in one place."""


class MlftError(Exception):
    """Base class of every error the domain raises on purpose. `param`: the path of the one
    request field at fault ("train_dataset", "strategy.replay.dataset"), when there is one."""

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class InvalidDatasetError(MlftError):
    """An uploaded dataset cannot be used; the message names the configuration and the problem."""


class InvalidSpecError(MlftError):
    """A job specification is inconsistent (unknown dataset, elements the foundation lacks, ...)."""


class UploadTooLargeError(MlftError):
    """An upload (or what its gzip compression unpacks to) is above the configured size limit."""


class AuthenticationError(MlftError):
    """No API token, or one that is unknown or revoked."""


class PermissionDeniedError(MlftError):
    """The caller is known but may not do this (a project token on an admin route, ...)."""


class ConflictError(MlftError):
    """The request clashes with what exists (a project name taken, ...)."""


class NotFoundError(MlftError):
    """A named object (dataset, job, foundation model) does not exist."""


class FoundationModelUnavailableError(MlftError):
    """A foundation model is registered by name but cannot be loaded here (no file, no network)."""


class FoundationModelBuildingError(FoundationModelUnavailableError):
    """A foundation model is being built here (the demo model on first start); ask again later."""


class InvalidQueryError(MlftError):
    """A list's filter cannot be read (a tag filter without a key, ...)."""


class InvalidStateTransitionError(MlftError):
    """A job was asked to move to a state its current state does not allow."""


class ArtifactMissingError(MlftError):
    """A job artifact (model, metrics) is not there yet or any more."""


class E0MismatchError(MlftError):
    """The E0s inside a trained model differ from the E0s the job chose."""


class TrainingFailedError(MlftError):
    """mace-torch training stopped with an error."""


class DiskFullError(MlftError):
    """The worker's disk has no space left for the work's files; the message names the disk."""


class PreflightBlockedError(MlftError):
    """The preflight stage found a problem that would waste the training run
    (core.science.preflight)."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


class InvalidModelFileError(MlftError):
    """A file offered as a foundation model is not a MACE model (or not one we can load safely)."""


class ServiceBusyError(MlftError):
    """A shared resource (database connections, the broker) cannot serve the request now; the
    client should retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BrokerUnavailableError(ServiceBusyError):
    """Work was committed but its task could not be sent; the dispatch sweeper sends it later."""


class DatabaseBusyError(ServiceBusyError):
    """Every database connection of the pool stayed busy for the pool timeout."""


class StorageUnavailableError(ServiceBusyError):
    """Artifact storage (S3) cannot be reached: a read at once, a write after its retries."""

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message, retry_after)
