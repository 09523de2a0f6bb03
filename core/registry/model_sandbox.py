"""Convert an uploaded model file into its safe form in a locked-down process.

A pickled model is never read by a process that serves requests or holds secrets. The reader
(core.registry.sandbox_reader) runs as a child with:

- an empty environment (PYTHONPATH to this checkout, HOME and TMPDIR in its own folder, one
  thread): no token, database URL, S3 key or proxy reaches it;
- its own temporary folder as working directory, removed afterwards;
- resource limits: address space (RLIMIT_AS), CPU time (RLIMIT_CPU), no core dumps, and a cap on
  the size of any file it writes (RLIMIT_FSIZE);
- no network: a new network namespace (`unshare --net`, with `--map-root-user` when not root)
  where the kernel allows it; where it does not, the child has no network settings to use and a
  warning is logged once (see docs/model-registration.md);
- a wall-clock timeout, after which its whole process group is killed.

It reads the file with `torch.load(weights_only=True)` and an allowlist of classes, and writes
the safe form (core.registry.safe_model), whose header the caller validates again here.
"""

import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.errors import InvalidModelFileError
from core.registry.safe_model import ModelFacts, read_header

logger = logging.getLogger(__name__)

# The checkout the child imports core from (the API's own, not whatever is installed).
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_RESULT = "MLFT-RESULT "


@dataclass(frozen=True)
class SandboxLimits:
    memory_mb: int = 6144
    cpu_s: int = 300

    @property
    def wall_s(self) -> float:
        # CPU time is the real limit; the wall clock only catches a child stuck waiting.
        return self.cpu_s * 2 + 30


def require_torch_archive(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        raise InvalidModelFileError(
            "the file is not a PyTorch model archive (what torch.save writes: a zip holding "
            "data.pkl); save the model with torch.save(model, path)"
        )
    with zipfile.ZipFile(path) as archive:
        if not any(name.endswith("/data.pkl") for name in archive.namelist()):
            raise InvalidModelFileError("the zip file holds no data.pkl: not a torch.save archive")


@lru_cache(maxsize=1)
def network_isolation() -> tuple[str, ...]:
    """The command prefix that gives the child no network, or () where the kernel refuses it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        logger.warning("model sandbox: no unshare command; the model reader keeps the network")
        return ()
    for prefix in ((unshare, "--net"), (unshare, "--net", "--map-root-user")):
        try:
            probe = subprocess.run(
                [*prefix, "true"], capture_output=True, timeout=10, check=False, env={}
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    logger.warning(
        "model sandbox: this kernel refuses a network namespace; the model reader runs with an "
        "empty environment but keeps the network"
    )
    return ()


def _limit(limits: SandboxLimits) -> None:
    """Run in the child before it starts Python (preexec)."""
    memory = limits.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # The safe form is never larger than the weights; 8 GiB is beyond any MACE.
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 30, 8 << 30))


def run_sandboxed(
    arguments: list[str], folder: Path, limits: SandboxLimits
) -> subprocess.CompletedProcess[str]:
    """`python <arguments>` in the sandbox, with `folder` as its working directory and home;
    subprocess.TimeoutExpired past the limits' wall-clock time."""
    environment = {
        "PYTHONPATH": str(_PROJECT_ROOT),
        "HOME": str(folder),
        "TMPDIR": str(folder),
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [*network_isolation(), sys.executable, "-s", *arguments]  # -s: no user site
    return subprocess.run(
        command,
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=limits.wall_s,
        preexec_fn=lambda: _limit(limits),
        start_new_session=True,
        check=False,
    )


def convert_in_sandbox(
    upload: Path, destination: Path, sha256: str, limits: SandboxLimits | None = None
) -> ModelFacts:
    """Write the safe form of the model file `upload` (whose sha256 the caller computed) to
    `destination`; InvalidModelFileError naming why when it is not a MACE mace can fine-tune."""
    limits = limits or SandboxLimits()
    require_torch_archive(upload)
    with tempfile.TemporaryDirectory(prefix="mlft-sandbox-") as folder:
        home = Path(folder)
        target = home / "model.safetensors"
        reader = ["-m", "core.registry.sandbox_reader", str(upload.resolve()), str(target), sha256]
        try:
            run = run_sandboxed(reader, home, limits)
        except subprocess.TimeoutExpired:
            raise InvalidModelFileError(
                f"reading the model took more than {limits.wall_s:g} s; refused"
            ) from None
        result = _result(run)
        if "error" in result:
            raise InvalidModelFileError(str(result["error"]))
        # The child's output is checked as strictly as any file: a closed architecture and facts.
        _, facts, source = read_header(target)
        if source != sha256:
            raise InvalidModelFileError("the sandbox wrote a safe form of another file")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(target), destination)
    return facts


def _result(run: subprocess.CompletedProcess[str]) -> dict[str, object]:
    lines = [line for line in run.stdout.splitlines() if line.startswith(_RESULT)]
    if lines:
        found = json.loads(lines[-1].removeprefix(_RESULT))
        if isinstance(found, dict):
            return found
    if run.returncode < 0:
        why = {9: "its CPU time or memory limit", 24: "its CPU time limit"}.get(
            -run.returncode, f"signal {-run.returncode}"
        )
        return {"error": f"reading the model was stopped by {why}; refused"}
    last = (run.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"the file cannot be read as a model: {last[:300]}"}
