"""`Client`: the mlft REST API as Python calls, from upload to an ASE calculator. Each method
names the route it calls (`@route`); a test walks the server's routes and finds one for each."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from mlft_client.errors import MlftError
from mlft_client.progress import JobProgress
from mlft_client.reconnect import Backoff, is_transient
from mlft_client.sse import TERMINAL_STATES, JobEvent
from mlft_client.transport import Listing, Transport, filter_params, route
from mlft_client.watching import follow_events

if TYPE_CHECKING:
    from mace.calculators import MACECalculator
    from rich.console import Console

ModelVariant = Literal["target", "multihead", "torchscript", "lammps"]
DOWNLOAD_CHUNK_BYTES = 1 << 20
# While a job's cost prediction is unknown, its row is read again at most this often.
COST_READ_SECONDS = 10.0
CALCULATOR_INSTALL = 'pip install "mlft-client[calculator]" (or: pip install mace-torch==0.3.16)'


class Client:
    """`http` replaces the client's own httpx.Client, e.g. with FastAPI's TestClient. Lists read
    every page unless given a `limit`; their `.total` is what the server holds."""

    def __init__(
        self, url: str, token: str | None = None, *, http: httpx.Client | None = None
    ) -> None:
        self._transport = Transport(url, token, http)
        self.url = self._transport.url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    # Datasets

    @route("POST", "/datasets")
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

    @route("GET", "/datasets")
    def datasets(
        self,
        *,
        name: str | None = None,
        name_contains: str | None = None,
        limit: int | None = None,
    ) -> Listing:
        """Datasets newest first; `name` is the file name exactly, `name_contains` a part."""
        filters = {"name": name, "name_contains": name_contains}
        return self._list("/datasets", filters, None, limit)

    @route("GET", "/datasets/{dataset_id}")
    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._json("GET", f"/datasets/{dataset_id}")

    @route("DELETE", "/datasets/{dataset_id}")
    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset no job still needs (where the server allows deleting)."""
        self._transport.request("DELETE", f"/datasets/{dataset_id}")

    # Foundation models and strategies

    @route("GET", "/foundation-models")
    def foundations(self) -> list[dict[str, Any]]:
        """Every foundation model a job can start from, promoted fine-tunes included."""
        body = self._json("GET", "/foundation-models")
        return body["data"] if isinstance(body, dict) else body

    @route("GET", "/foundation-models/{name}")
    def foundation(self, name: str) -> dict[str, Any]:
        """One foundation model; a promoted one with its `lineage` (parent foundation, job,
        dataset sha256s, E0 method, strategy)."""
        return self._json("GET", f"/foundation-models/{name}")

    @route("POST", "/foundation-models")
    def register_foundation(self, name: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Register a .model file under a name, pinned by its sha256 (admin token only)."""
        path = Path(path)
        with path.open("rb") as stream:
            return self._json(
                "POST",
                "/foundation-models",
                files={"file": (path.name, stream)},
                data={"name": name},
            )

    @route("POST", "/jobs/{job_id}/promote")
    def promote(self, job_id: str, name: str, description: str | None = None) -> dict[str, Any]:
        """Register a succeeded job's model as a foundation named `name`, with its lineage; the
        next job can start from it with `"foundation_model": name`. A project token's names
        start with `<project id>.`; the admin's may be anything."""
        body: dict[str, Any] = {"name": name}
        if description is not None:
            body["description"] = description
        return self._json("POST", f"/jobs/{job_id}/promote", json=body)

    @route("GET", "/strategies")
    def strategies(self) -> dict[str, Any]:
        """The strategies and E0 methods a spec accepts, with the study's presets."""
        return self._json("GET", "/strategies")

    @route("POST", "/preflight")
    def preflight(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A job spec's preflight without submitting it: findings, suggestion, cost estimate."""
        return self._json("POST", "/preflight", json=spec)

    # Jobs

    @route("POST", "/jobs")
    def create_job(
        self,
        spec: dict[str, Any],
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Submit a job; `name` and `tags` (added to the spec's own) find it again later."""
        return self._json("POST", "/jobs", json=_named(spec, name, tags))

    @route("GET", "/jobs")
    def jobs(
        self,
        *,
        state: str | None = None,
        strategy: str | None = None,
        foundation: str | None = None,
        name: str | None = None,
        name_contains: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        sweep: str | None = None,
        limit: int | None = None,
    ) -> Listing:
        """Jobs newest first, filtered; every tag given must match (a None value: the tag is
        set, whatever its value)."""
        filters = {
            "state": state,
            "strategy": strategy,
            "foundation": foundation,
            "name": name,
            "name_contains": name_contains,
            "sweep": sweep,
        }
        return self._list("/jobs", filters, tags, limit)

    @route("GET", "/jobs/{job_id}")
    def job(self, job_id: str, *, include: Sequence[str] = ()) -> dict[str, Any]:
        """The job's state and progress; `include=("epochs", "split")` adds its learning curve
        and split, which a status read leaves out."""
        return self._json("GET", f"/jobs/{job_id}", params={"include": list(include)})

    @route("POST", "/jobs/{job_id}/cancel")
    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    @route("GET", "/jobs/{job_id}/metrics")
    def metrics(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{job_id}/metrics")

    @route("GET", "/jobs/{job_id}/report")
    def report(self, job_id: str, format: Literal["json", "html"] = "json") -> dict[str, Any] | str:
        """The job's report: a dict for "json", the page's text for "html"."""
        return self._formatted(f"/jobs/{job_id}/report", format)

    @route("GET", "/jobs/{job_id}/model-card")
    def model_card(
        self, job_id: str, format: Literal["json", "md"] = "json"
    ) -> dict[str, Any] | str:
        """Where the job's model came from and what it was measured to do (JSON or Markdown)."""
        return self._formatted(f"/jobs/{job_id}/model-card", format)

    @route("GET", "/jobs/{job_id}/log")
    def log(self, job_id: str) -> str:
        """mace-torch's whole training log."""
        return self._transport.request("GET", f"/jobs/{job_id}/log").text

    @route("GET", "/jobs/{job_id}/model")
    def download_model(
        self, job_id: str, path: str | os.PathLike[str], variant: ModelVariant = "target"
    ) -> Path:
        """Save the fine-tuned model; a folder as `path` gets the server's file name in it."""
        return self._download(
            f"/jobs/{job_id}/model", path, model_file_name(job_id, variant), {"variant": variant}
        )

    @route("GET", "/jobs/{job_id}/rss-holes.extxyz")
    def download_rss_holes(self, job_id: str, path: str | os.PathLike[str]) -> Path:
        """The structures the RSS evaluation flagged as holes in the job's model, as extxyz."""
        return self._download(
            f"/jobs/{job_id}/rss-holes.extxyz", path, f"mlft-{job_id}-rss-holes.extxyz"
        )

    @route("GET", "/jobs/{job_id}/events")
    def events(
        self,
        job_id: str,
        *,
        log: bool = False,
        timeout: float | None = None,
        backoff: Backoff | None = None,
    ) -> Iterator[JobEvent]:
        """The job's server-sent events until it ends, resumed after any disconnect
        (Last-Event-ID, backoff, Retry-After); TimeoutError after `timeout` seconds."""
        return follow_events(self._transport, job_id, log=log, timeout=timeout, backoff=backoff)

    def wait(
        self,
        job_id: str,
        *,
        progress: bool = True,
        timeout: float | None = None,
        console: Console | None = None,
        backoff: Backoff | None = None,
    ) -> dict[str, Any]:
        """Follow a job until it ends and return it; with `progress`, live bars on stderr (or
        `console`). A job that has ended already is shown once, in its final state."""
        policy = backoff or Backoff()
        job = self._patiently(self.job, job_id, policy)
        display = JobProgress(job_id, console) if progress else None
        try:
            if display is not None:
                display.start(job)
            if job["state"] not in TERMINAL_STATES:
                cost_read = time.monotonic()
                for event in self.events(job_id, timeout=timeout, backoff=backoff):
                    if display is None:
                        continue
                    display.update(event)
                    # The stream's state events do not carry the cost prediction the ETA uses.
                    now = time.monotonic()
                    if display.wants_cost and now - cost_read >= COST_READ_SECONDS:
                        cost_read = now
                        display.learn(self._patiently(self.job, job_id, policy))
                job = self._patiently(self.job, job_id, policy)
            if display is not None:
                display.finish(job)
            return job
        finally:
            if display is not None:
                display.close()

    # Evaluations

    @route("POST", "/evaluations")
    def create_evaluation(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Evaluate a job's model or a foundation on a dataset (any labels, energy-only too)."""
        return self._json("POST", "/evaluations", json=spec)

    @route("GET", "/evaluations")
    def evaluations(
        self,
        *,
        state: str | None = None,
        foundation: str | None = None,
        job: str | None = None,
        limit: int | None = None,
    ) -> Listing:
        """Evaluations newest first: of a job's model (`job`), or of or against a foundation."""
        filters = {"state": state, "foundation": foundation, "job": job}
        return self._list("/evaluations", filters, None, limit)

    @route("GET", "/evaluations/{evaluation_id}")
    def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        return self._json("GET", f"/evaluations/{evaluation_id}")

    @route("POST", "/evaluations/{evaluation_id}/cancel")
    def cancel_evaluation(self, evaluation_id: str) -> dict[str, Any]:
        return self._json("POST", f"/evaluations/{evaluation_id}/cancel")

    @route("GET", "/evaluations/{evaluation_id}/report")
    def evaluation_report(
        self, evaluation_id: str, format: Literal["json", "html"] = "json"
    ) -> dict[str, Any] | str:
        return self._formatted(f"/evaluations/{evaluation_id}/report", format)

    @route("GET", "/evaluations/{evaluation_id}/rss-holes.extxyz")
    def download_evaluation_rss_holes(
        self, evaluation_id: str, path: str | os.PathLike[str]
    ) -> Path:
        return self._download(
            f"/evaluations/{evaluation_id}/rss-holes.extxyz",
            path,
            f"mlft-{evaluation_id}-rss-holes.extxyz",
        )

    def wait_evaluation(
        self, evaluation_id: str, *, timeout: float | None = None, poll: float = 2.0
    ) -> dict[str, Any]:
        """Poll an evaluation until it ends and return it; TimeoutError after `timeout` s."""
        return self._poll(self.evaluation, evaluation_id, "evaluation", timeout, poll)

    # Sweeps

    @route("POST", "/sweeps")
    def create_sweep(
        self,
        spec: dict[str, Any],
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One job per strategy (and grid point) of a base spec; see `sweep` for the table."""
        return self._json("POST", "/sweeps", json=_named(spec, name, tags))

    @route("GET", "/sweeps")
    def sweeps(
        self,
        *,
        state: str | None = None,
        strategy: str | None = None,
        foundation: str | None = None,
        name: str | None = None,
        name_contains: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        limit: int | None = None,
    ) -> Listing:
        """Sweeps newest first; `state`: with at least one job in it; `strategy`: running it."""
        filters = {
            "state": state,
            "strategy": strategy,
            "foundation": foundation,
            "name": name,
            "name_contains": name_contains,
        }
        return self._list("/sweeps", filters, tags, limit)

    @route("GET", "/sweeps/{sweep_id}")
    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """The comparison table of the sweep's jobs and its recommendation."""
        return self._json("GET", f"/sweeps/{sweep_id}")

    @route("POST", "/sweeps/{sweep_id}/cancel")
    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._json("POST", f"/sweeps/{sweep_id}/cancel")

    @route("GET", "/sweeps/{sweep_id}/report")
    def sweep_report(
        self, sweep_id: str, format: Literal["json", "html"] = "json"
    ) -> dict[str, Any] | str:
        return self._formatted(f"/sweeps/{sweep_id}/report", format)

    def wait_sweep(
        self,
        sweep_id: str,
        *,
        timeout: float | None = None,
        poll: float = 5.0,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a sweep until every job has ended (`on_poll` sees each reading); TimeoutError
        after `timeout` s."""
        return self._poll(self.sweep, sweep_id, "sweep", timeout, poll, on_poll)

    # Replay sets

    @route("POST", "/replay-sets")
    def create_replay_set(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Build (or reuse, for the same inputs) a replay set labelled by the foundation."""
        return self._json("POST", "/replay-sets", json=spec)

    @route("GET", "/replay-sets")
    def replay_sets(self, *, limit: int | None = None) -> Listing:
        return self._list("/replay-sets", {}, None, limit)

    @route("GET", "/replay-sets/{replay_set_id}")
    def replay_set(self, replay_set_id: str) -> dict[str, Any]:
        return self._json("GET", f"/replay-sets/{replay_set_id}")

    @route("POST", "/replay-sets/{replay_set_id}/cancel")
    def cancel_replay_set(self, replay_set_id: str) -> dict[str, Any]:
        return self._json("POST", f"/replay-sets/{replay_set_id}/cancel")

    # Projects and tokens (admin token)

    @route("GET", "/projects")
    def projects(self) -> list[dict[str, Any]]:
        return self._json("GET", "/projects")

    @route("POST", "/projects")
    def create_project(self, name: str) -> dict[str, Any]:
        return self._json("POST", "/projects", json={"name": name})

    @route("POST", "/projects/{project_id}/tokens")
    def create_token(self, project_id: str, name: str) -> dict[str, Any]:
        """A new token of the project; its secret is in this answer only."""
        return self._json("POST", f"/projects/{project_id}/tokens", json={"name": name})

    @route("DELETE", "/projects/{project_id}/tokens/{token_id}")
    def revoke_token(self, project_id: str, token_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/projects/{project_id}/tokens/{token_id}")

    # Models as ASE calculators

    def calculator(self, job_id: str, *, device: str = "cpu") -> MACECalculator:
        """An ASE calculator of the job's model, downloaded once into the cache folder."""
        try:
            from mace.calculators import MACECalculator
        except ImportError as error:
            raise ImportError(
                f"Client.calculator() needs mace-torch, which the client does not install by "
                f"default: {CALCULATOR_INSTALL}"
            ) from error
        path = model_cache_dir() / model_file_name(job_id, "target")
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.download_model(job_id, path)
        return MACECalculator(model_paths=str(path), device=device, default_dtype="float64")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._transport.json(method, path, **kwargs)

    def _list(
        self,
        path: str,
        filters: Mapping[str, str | None],
        tags: Mapping[str, str | None] | None,
        limit: int | None,
    ) -> Listing:
        return self._transport.pages(path, filter_params(filters, tags), limit)

    def _formatted(self, path: str, format: str) -> dict[str, Any] | str:
        response = self._transport.request("GET", path, params={"format": format})
        return response.json() if format == "json" else response.text

    def _download(
        self,
        path: str,
        target: str | os.PathLike[str],
        file_name: str,
        params: dict[str, str] | None = None,
    ) -> Path:
        target = Path(target)
        if target.is_dir():
            target = target / file_name
        partial = target.with_name(f"{target.name}.part")
        try:
            with (
                self._transport.stream("GET", path, params=params or {}) as response,
                partial.open("wb") as out,
            ):
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        # Renamed only when complete, so an interrupted download never looks like a model.
        partial.replace(target)
        return target

    @staticmethod
    def _patiently(
        read: Callable[[str], dict[str, Any]], item_id: str, policy: Backoff
    ) -> dict[str, Any]:
        """A read that a dropped connection or a 503 does not end: retried after the backoff
        (the server's Retry-After first), as the events stream is."""
        failures = 0
        while True:
            try:
                return read(item_id)
            except MlftError as error:
                failures += 1
                if not is_transient(error) or policy.gives_up(failures):
                    raise
                time.sleep(policy.delay(failures, error))

    @staticmethod
    def _poll(
        read: Callable[[str], dict[str, Any]],
        item_id: str,
        noun: str,
        timeout: float | None,
        poll: float,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = Client._patiently(read, item_id, Backoff())
            if on_poll is not None:
                on_poll(item)
            # A sweep has no state of its own: `finished` once each of its jobs has ended.
            if item.get("state") in TERMINAL_STATES or item.get("finished"):
                return item
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{noun} {item_id} did not finish within {timeout} s")
            time.sleep(poll)


def _named(
    spec: dict[str, Any], name: str | None, tags: Mapping[str, str] | None
) -> dict[str, Any]:
    body = dict(spec)
    if name is not None:
        body["name"] = name
    if tags:
        body["tags"] = {**(spec.get("tags") or {}), **tags}
    return body


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
