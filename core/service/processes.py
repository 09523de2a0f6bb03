"""Stopping a child process: politely first, so it can finish its current step and clean up
(a Celery worker removes its heartbeat, mace-torch closes its files), then by force."""

import subprocess
from typing import Any

# Long enough for a worker to finish a clean shutdown on a loaded machine; a process still
# running after it is stuck, not busy.
STOP_GRACE_SECONDS = 30.0


def stop_process(process: subprocess.Popen[Any], grace_seconds: float = STOP_GRACE_SECONDS) -> int:
    """SIGTERM, wait up to `grace_seconds`, then SIGKILL; returns the exit code once it is reaped.
    A process that has already ended is only reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
