"""Memory of upload validation (issue 17, item 10): the peak RSS growth of spooling, unpacking and
validating one upload, measured in a fresh process, for a large valid extxyz and a gzip bomb.

Each file goes through what POST /datasets does with it (core.artifacts.uploads spool and gunzip
under the size limit, core.data.datasets.inspect_extxyz); the growth is the process's peak resident
set after the upload minus its resident set after the imports and a small warm-up upload (Linux: the
peak is reset through /proc/self/clear_refs).

Usage: python bench/upload_memory.py [--valid-mb 200] [--bomb-mib 464] [--small]
       [--out docs/benchmarks.md]
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, write_section  # noqa: E402

MB = 1e6
MIB = 1 << 20
# The default MLFT_MAX_UPLOAD_BYTES: the bomb unpacks to just under it, so that it is rejected
# by validation (it is not text), the costlier path, rather than by the size limit.
UPLOAD_LIMIT = 512 * MIB
# Runs in a fresh interpreter, so that nothing measured before inflates the peak.
CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from core.data.datasets import inspect_extxyz
from core.errors import MlftError
from core.artifacts.uploads import CHUNK_BYTES, upload_spool

def validate(path, limit):
    with upload_spool(Path(tempfile.mkdtemp()), limit) as spool:
        with open(path, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                spool.write(chunk)
        return inspect_extxyz(spool.finish())

def status_mb(field):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(l for l in lines if l.startswith(field)).split()[1]) / 1024

warm_up, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
validate(warm_up, limit)
# Imports (torch among them) peaked higher than what follows needs: reset the peak to now.
Path("/proc/self/clear_refs").write_text("5")
before = status_mb("VmRSS:")
start = time.perf_counter()
try:
    summary = validate(path, limit)
    outcome = f"accepted: {summary.n_configs} configurations"
except MlftError as error:
    outcome = f"rejected ({type(error).__name__}): {str(error)[:80]}"
print(json.dumps({"growth_mb": status_mb("VmHWM:") - before, "seconds": time.perf_counter() - start,
                  "outcome": outcome}))
"""


@dataclass(frozen=True)
class Measurement:
    growth_mb: float  # peak RSS growth of the validating process, MiB
    seconds: float
    outcome: str


def write_frames(path: Path, target_bytes: int) -> Path:
    """Valid labelled configurations of 64 atoms up to target_bytes (bench.api_load's data)."""
    from bench.api_load import write_labelled_extxyz

    write_labelled_extxyz(path, target_bytes, seed=7)
    return path


def write_gzip_bomb(path: Path, unpacked_bytes: int) -> Path:
    """Zeros, gzip-compressed: about 1000 times smaller than what they unpack to."""
    zeros = bytes(MIB)
    with gzip.open(path, "wb", compresslevel=9) as out:
        for _ in range(unpacked_bytes // MIB):
            out.write(zeros)
    return path


def measure_validation(path: Path, limit: int = UPLOAD_LIMIT) -> Measurement:
    """Spool, unpack and validate `path` in a fresh process; its peak RSS growth."""
    with tempfile.TemporaryDirectory(prefix="mlft-upload-memory-") as folder:
        warm_up = write_frames(Path(folder) / "warm-up.extxyz", 20_000)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(warm_up), str(path), str(limit)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return Measurement(**json.loads(result.stdout.strip().splitlines()[-1]))


def measure(valid_mb: float, bomb_mib: int, folder: Path) -> list[tuple[str, str]]:
    load = f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    valid = write_frames(folder / "valid.extxyz", int(valid_mb * MB))
    bomb = write_gzip_bomb(folder / "bomb.extxyz.gz", bomb_mib * MIB)
    rows = [("load average when started", load)]
    for name, path in (
        (f"valid extxyz, {valid.stat().st_size / MB:.0f} MB", valid),
        (f"gzip bomb, {bomb.stat().st_size / 1e3:.0f} kB unpacking to {bomb_mib} MiB", bomb),
    ):
        started = time.perf_counter()
        result = measure_validation(path)
        rows += [
            (f"{name}: outcome", result.outcome),
            (
                f"{name}: peak RSS growth (MiB) / seconds",
                f"{result.growth_mb:.1f} / {result.seconds:.1f}",
            ),
        ]
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--valid-mb", type=float, default=200.0)
    parser.add_argument("--bomb-mib", type=int, default=464)
    parser.add_argument("--small", action="store_true", help="2 MB and a 32 MiB bomb (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    valid_mb, bomb_mib = (2.0, 32) if args.small else (args.valid_mb, args.bomb_mib)
    with tempfile.TemporaryDirectory(prefix="mlft-bench-") as tmp:
        rows = measure(valid_mb, bomb_mib, Path(tmp))
    for name, value in rows:
        print(f"{name:60s} {value}")
    if args.out is not None:
        write_section(
            args.out,
            "Upload validation memory",
            rows,
            command=f"python bench/upload_memory.py --valid-mb {valid_mb:g} "
            f"--bomb-mib {bomb_mib} --out {args.out}",
        )


if __name__ == "__main__":
    main()
