"""`mlft-worker` (or `python -m worker`): one Celery worker on this machine, on both queues, one
job at a time, as the embedded service starts it."""

import subprocess
import sys

from worker.local import worker_command


def main() -> int:
    return subprocess.call(worker_command())


if __name__ == "__main__":
    sys.exit(main())
