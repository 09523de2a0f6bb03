"""`Client`: the mlft REST API as Python calls, from upload to an ASE calculator."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from mlft_client.errors import MlftError, error_from_response
from mlft_client.progress import ProgressBar
from mlft_client.sse import JobEvent, parse_events

if TYPE_CHECKING:
    from mace.calculators import MACECalculator

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "stopped_early"})
ModelVariant = Literal["target", "multihead", "torchscript", "lammps"]
# The server sends a keep-alive every 15 s; four missed ones mean the connection is dead.
STREAM_READ_TIMEOUT = 60.0
DOWNLOAD_CHUNK_BYTES = 1 << 20


class Client:
    """`http` replaces the client's own httpx.Client, e.g. with FastAPI's TestClient."""

    def __init__(
        self, url: str, token: str | None = None, *, http: httpx.Client | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def upload_dataset(
        self,
        path: str | os.PathLike[str],
        *,
        energy_key: str | None = None,
        forces_key: str | None = None,
        stress_key: str | None = None,
        virials_key: str | None = None,
    ) -> dict[str, Any]:
        """Upload an extxyz file; the server validates and summarises it. The keys name where
        the labels are when the server does not recognise them (mace's flag names); the same
        file uploaded again returns the existing dataset. Read `summary["warnings"]`."""
        path = Path(path)
        named = {
            "energy_key": energy_key,
            "forces_key": forces_key,
            "stress_key": stress_key,
            "virials_key": virials_key,
        }
        form = {name: key for name, key in named.items() if key is not None}
        with path.open("rb") as stream:
            return self._json("POST", "/datasets", files={"file": (path.name, stream)}, data=form)

    def datasets(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self._json("GET", "/datasets", params={"limit": limit, "offset": offset})["data"]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._json("GET", f"/datasets/{dataset_id}")

    def create_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/jobs", json=spec)

    def preflight(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A job spec's preflight without submitting it: findings, suggestion, cost estimate."""
        return self._json("POST", "/preflight", json=spec)

    def model_card(
        self, job_id: str, format: Literal["json", "md"] = "json"
    ) -> dict[str, Any] | str:
        """Where the job's model came from and what it was measured to do (JSON or Markdown)."""
        response = self._request("GET", f"/jobs/{job_id}/model-card", params={"format": format})
        return response.json() if format == "json" else response.text

    def create_evaluation(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Evaluate a job's model or a foundation on a dataset (any labels, energy-only too)."""
        return self._json("POST", "/evaluations", json=spec)

    def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        return self._json("GET", f"/evaluations/{evaluation_id}")

    def evaluation_report(
        self, evaluation_id: str, format: Literal["json", "html"] = "json"
    ) -> dict[str, Any] | str:
        response = self._request(
            "GET", f"/evaluations/{evaluation_id}/report", params={"format": format}
        )
        return response.json() if format == "json" else response.text

    def wait_evaluation(
        self, evaluation_id: str, *, timeout: float | None = None, poll: float = 2.0
    ) -> dict[str, Any]:
        """Poll an evaluation until it ends and return it; TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            evaluation = self.evaluation(evaluation_id)
            if evaluation["state"] in TERMINAL_STATES:
                return evaluation
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"evaluation {evaluation_id} did not finish within {timeout} s")
            time.sleep(poll)

    def jobs(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self._json("GET", "/jobs", params={"limit": limit, "offset": offset})["data"]

    def job(self, job_id: str, *, include: Sequence[str] = ()) -> dict[str, Any]:
        """The job's state and progress; `include=("epochs", "split")` adds its learning curve
        and split, which a status read leaves out."""
        return self._json("GET", f"/jobs/{job_id}", params={"include": list(include)})

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def metrics(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{job_id}/metrics")

    def report(self, job_id: str, format: Literal["json", "html"] = "json") -> dict[str, Any] | str:
        """The job's report: a dict for "json", the page's text for "html"."""
        response = self._request("GET", f"/jobs/{job_id}/report", params={"format": format})
        return response.json() if format == "json" else response.text

    def events(
        self, job_id: str, *, log: bool = False, timeout: float | None = None
    ) -> Iterator[JobEvent]:
        """The job's server-sent events until it ends; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        read_timeout = STREAM_READ_TIMEOUT
        if timeout is not None:
            read_timeout = min(max(timeout, 0.1), STREAM_READ_TIMEOUT)
        expired = f"job {job_id} did not finish within {timeout or 0:.0f} s"
        params = {"log": "true"} if log else {}
        try:
            with self._stream(
                "GET", f"/jobs/{job_id}/events", params=params, read_timeout=read_timeout
            ) as response:
                yield from parse_events(_lines_until(response.iter_lines(), deadline, expired))
        except MlftError as error:
            # A read that times out after the deadline is the caller's timeout, not a fault.
            if error.status is None and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(expired) from error
            raise

    def wait(
        self, job_id: str, *, progress: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """Follow a job until it ends and return it; with `progress`, a live bar on stderr."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = ProgressBar(job_id) if progress else None
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                for event in self.events(job_id, timeout=remaining):
                    if bar is not None:
                        bar.update(event)
                job = self.job(job_id)
                if job["state"] in TERMINAL_STATES:
                    return job
                # The stream ended with the job still going (a restarted server): follow again.
        finally:
            if bar is not None:
                bar.close()

    def download_model(
        self,
        job_id: str,
        path: str | os.PathLike[str],
        variant: ModelVariant = "target",
    ) -> Path:
        """Save the fine-tuned model; a folder as `path` gets the server's file name in it."""
        path = Path(path)
        if path.is_dir():
            path = path / model_file_name(job_id, variant)
        partial = path.with_name(f"{path.name}.part")
        params = {"variant": variant}
        with (
            self._stream("GET", f"/jobs/{job_id}/model", params=params) as response,
            partial.open("wb") as out,
        ):
            for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
        # Renamed only when complete, so an interrupted download never looks like a model.
        partial.replace(path)
        return path

    def calculator(self, job_id: str, *, device: str = "cpu") -> MACECalculator:
        """An ASE calculator of the job's model, downloaded once into the cache folder."""
        from mace.calculators import MACECalculator

        path = model_cache_dir() / model_file_name(job_id, "target")
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.download_model(job_id, path)
        return MACECalculator(model_paths=str(path), device=device, default_dtype="float64")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, self.url + path, headers=self._headers, **kwargs)
        except httpx.TransportError as error:
            raise self._transport_error(error) from error
        if response.is_error:
            raise error_from_response(response)
        return response

    @contextmanager
    def _stream(
        self, method: str, path: str, *, read_timeout: float | None = None, **kwargs: Any
    ) -> Iterator[httpx.Response]:
        if read_timeout is not None:
            kwargs["timeout"] = httpx.Timeout(60.0, connect=10.0, read=read_timeout)
        try:
            with self._http.stream(
                method, self.url + path, headers=self._headers, **kwargs
            ) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.TransportError as error:
            raise self._transport_error(error) from error

    def _transport_error(self, error: httpx.TransportError) -> MlftError:
        if isinstance(error, httpx.ConnectError):
            return MlftError(None, f"cannot reach the mlft server at {self.url}: {error}")
        if isinstance(error, httpx.TimeoutException):
            return MlftError(None, f"the mlft server at {self.url} did not answer in time")
        return MlftError(None, f"the connection to the mlft server at {self.url} broke: {error}")


def model_file_name(job_id: str, variant: ModelVariant) -> str:
    """The name the server gives the file, so downloads and the cache agree."""
    if variant in ("torchscript", "lammps"):
        return f"mlft-{job_id}-{variant}.pt"
    return f"mlft-{job_id}{'' if variant == 'target' else '-multihead'}.model"


def model_cache_dir() -> Path:
    """Models of finished jobs never change, so a downloaded one is kept: `MLFT_CACHE_DIR`, or
    `mlft/models` under the XDG cache folder."""
    if folder := os.environ.get("MLFT_CACHE_DIR"):
        return Path(folder)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mlft" / "models"


def _lines_until(lines: Iterator[str], deadline: float | None, expired: str) -> Iterator[str]:
    # Keep-alive comments arrive while a job is quiet, so the deadline is checked on every line.
    for line in lines:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(expired)
        yield line
