"""A Python client for the mlft fine-tuning service; needs httpx and rich (mace for
`calculator`)."""

from mlft_client.client import Client
from mlft_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    MlftError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from mlft_client.reconnect import Backoff
from mlft_client.sse import JobEvent
from mlft_client.transport import Listing

__all__ = [
    "Backoff",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "JobEvent",
    "Listing",
    "MlftError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationFailed",
]
