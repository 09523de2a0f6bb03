"""A lab laptop installs the client alone: a fresh virtual environment, `pip install ./client`
from the package index, and the `mlft` command runs with no torch, mace or server code there."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e
SERVER_SIDE = ("api", "core", "worker", "torch", "mace", "fastapi", "sqlalchemy", "celery")


def run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    # Without PYTHONPATH, which points at this checkout's server packages in the tests' shell.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_client_installs_and_runs_in_a_fresh_venv_without_the_server(tmp_path) -> None:
    venv = tmp_path / "laptop"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = run([python, "-m", "pip", "install", REPO_ROOT / "client"], tmp_path)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    probe = (
        "import importlib.util, mlft_client; "
        f"print(sorted(n for n in {SERVER_SIDE!r} if importlib.util.find_spec(n)))"
    )
    present = run([python, "-c", probe], tmp_path)
    usage = run([venv / "bin" / "mlft", "--help"], tmp_path)

    assert present.stdout.strip() == "[]", present.stderr
    assert usage.returncode == 0
    assert "datasets" in usage.stdout and "jobs" in usage.stdout
