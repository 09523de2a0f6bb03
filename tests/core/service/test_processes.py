"""stop_process: SIGTERM first, SIGKILL only for a process that outlives its grace period."""

import signal
import subprocess
import sys

from core.service.processes import stop_process

SLEEPS = "import time; print('ready', flush=True); time.sleep(600)"
IGNORES_SIGTERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + SLEEPS


def _python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _wait_until_ready(process: subprocess.Popen[str]) -> None:
    # The child says so once its signal handling is in place; signalling earlier would race it.
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"


def test_a_process_that_honours_sigterm_ends_by_it() -> None:
    with _python(SLEEPS) as process:
        _wait_until_ready(process)

        code = stop_process(process)

    assert code == -signal.SIGTERM


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    with _python(IGNORES_SIGTERM) as process:
        _wait_until_ready(process)

        code = stop_process(process, grace_seconds=0.5)

    assert code == -signal.SIGKILL


def test_a_process_that_already_ended_is_only_reaped() -> None:
    with _python("import sys; sys.exit(3)") as process:
        process.wait()

        code = stop_process(process)

    assert code == 3
