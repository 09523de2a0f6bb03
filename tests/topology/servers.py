"""Throwaway servers for the fault tests (tests/topology/test_faults.py): a PostgreSQL cluster and
a Redis of their own, a link to S3 that can be cut, and a small disk. A fault test stops and
starts these, never the PostgreSQL or Redis that other test runs share."""

import errno
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.topology import free_port
from core.service.processes import stop_process

# Starting a cluster or a Redis takes about a second; a loaded machine of 2 cores, more.
START_TIMEOUT_S = 60.0


class ServerUnavailable(Exception):
    """The binaries or permissions a private server needs are missing here (the test skips)."""


def _wait_for_port(port: int, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answers on port {port} after {timeout} s")


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    pg_ctl = Path(found[-1]) if found else Path(shutil.which("pg_ctl") or "")
    if not pg_ctl.is_file():
        raise ServerUnavailable("no PostgreSQL server binaries (pg_ctl, initdb) on this machine")
    return pg_ctl.parent


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder on a port of its own. initdb refuses to run as
    root, so as root the cluster belongs to the `postgres` user."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.port = free_port()
        # Not under pytest's tmp_path: its folders are root's alone, and the server may not be.
        self.folder = Path(tempfile.mkdtemp(prefix="mlft-private-postgres-"))
        self.data = self.folder / "data"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            try:
                shutil.chown(self.folder, "postgres")
            except LookupError as error:
                raise ServerUnavailable("initdb refuses root, and no postgres user") from error
            self._as_owner = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # Durability off: the cluster lives for one test module.
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        log = str(self.folder / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """As an operator's restart does: clients disconnected, running transactions aborted."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as_owner, str(self.bin / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            raise ServerUnavailable(f"{program} failed: {done.stderr.strip() or done.stdout}")


class PrivateRedis:
    """A redis-server on a port of its own that keeps nothing on disk: a restart loses every
    message it held, the worst a broker restart can do (the Compose file runs Redis with an
    append-only file, which keeps them)."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise ServerUnavailable("no redis-server on this machine")
        self.executable = executable
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mlft-private-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, START_TIMEOUT_S)
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class CuttableLink:
    """A TCP relay from a local port to `target_port`: `cut` resets every open connection and
    refuses new ones (the server is unreachable, not slow); `mend` takes them again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mend(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            # Linger 0: the peer gets a reset, as when a server or a route goes away.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by cut()
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # cut, or the other side closed


def mount_tmpfs(folder: Path, size_mb: int) -> None:
    """A small disk of its own for `folder` (root only; ServerUnavailable otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as error:
        raise ServerUnavailable("no mount command here") from error
    if done.returncode != 0:
        raise ServerUnavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def unmount(folder: Path) -> None:
    # Lazy: a process of the topology that still holds a file there does not block it.
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill_disk(folder: Path) -> Path:
    """Writes a file in `folder` until its disk has no space left; returns the file."""
    filler = folder / "filler"
    chunk = b"\0" * (1024 * 1024)
    with filler.open("wb", buffering=0) as stream:
        try:
            while True:
                stream.write(chunk)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return filler
