"""A Python client for the mlft fine-tuning service; needs only httpx (mace for `calculator`)."""

from mlft_client.client import Client
from mlft_client.errors import MlftError
from mlft_client.sse import JobEvent

__all__ = ["Client", "JobEvent", "MlftError"]
