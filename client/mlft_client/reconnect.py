"""When to reconnect a dropped events stream: exponential backoff from the server's `retry:` hint,
a `Retry-After` from a 503 or 429 taking precedence, and a limit on failures in a row."""

from __future__ import annotations

import random
from dataclasses import dataclass

from mlft_client.errors import ConnectionFailed, MlftError, RateLimited, ServiceUnavailable

# The errors after which the same request may succeed later; a 404 or 401 will not.
TRANSIENT_ERRORS = (ConnectionFailed, ServiceUnavailable, RateLimited)


@dataclass
class Backoff:
    """`first` seconds after the first failure, doubling up to `ceiling`, with ±20 % jitter so
    that many clients cut off together do not come back together; `attempts` failures in a row
    (no event received in between) and the error is raised."""

    first: float = 0.5
    ceiling: float = 30.0
    attempts: int = 10

    def delay(self, failures: int, error: MlftError | None = None) -> float:
        if error is not None and error.retry_after is not None:
            return error.retry_after
        base = min(self.ceiling, self.first * 2 ** max(0, failures - 1))
        return base * random.uniform(0.8, 1.2)

    def gives_up(self, failures: int) -> bool:
        return failures >= self.attempts

    def hinted(self, milliseconds: int) -> Backoff:
        """The server's `retry:` replaces the first delay (never above the ceiling)."""
        return Backoff(min(milliseconds / 1000, self.ceiling), self.ceiling, self.attempts)


def is_transient(error: MlftError) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)
