"""A lab's MLflow fed without glue (issue 28): with MLFT_MLFLOW_TRACKING_URI set, every job that
ends is logged as an MLflow run — its spec as params, its learning curve and test metrics as
metrics, its model card and report as artifacts, its id, name and tags as tags — and a sweep as
the parent run of its jobs' runs.

A job is logged once it has ended, from its row: the row is the truth, and a worker that died
mid-job leaves nothing half-logged. Logging never fails a job: what went wrong becomes one of the
job's warnings. mlflow (or mlflow-skinny) is an optional extra: `pip install "mlft[mlflow]"`.
"""

import json
import logging
import re
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import CursorResult, update

from core.reporting.job_report import job_report
from core.reporting.model_card import render_markdown
from core.reporting.reports import render_html
from core.service.db import session_scope
from core.service.jobs import JOB_PARTS, TERMINAL_STATES, add_warnings, get_job
from core.service.models import Job, JobState, Sweep
from core.workflows.context import JobContext
from core.workflows.sweeps import get_sweep, sweep_summary

logger = logging.getLogger(__name__)

RUN_STATUS = {JobState.SUCCEEDED: "FINISHED", JobState.FAILED: "FAILED"}
# MLflow's limits per log_batch call.
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_CHARS = 6000
# Metric and param keys: MLflow accepts letters, digits and _ - . space / only.
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
# The spec's own labels are the run's name and tags, not params.
LABEL_FIELDS = ("name", "tags")


def log_job_run(context: JobContext, job_id: str) -> str | None:
    """Log the ended job `job_id` as an MLflow run, once; its run id, or None when MLflow is not
    configured or logging failed (then the job carries a warning saying why)."""
    if context.mlflow_tracking_uri is None:
        return None
    try:
        return _log_job(context, job_id)
    except Exception as error:  # the job's outcome stands; the tracking server is a convenience
        where = redacted(context.mlflow_tracking_uri)
        # mlflow's messages repeat the URI, credentials and all.
        reason = f"{type(error).__name__}: {error}".replace(context.mlflow_tracking_uri, where)
        if isinstance(error, ImportError):
            reason = "mlflow is not installed here (pip install 'mlft[mlflow]')"
        logger.warning("job=%s not logged to MLflow at %s: %s", job_id, where, reason)
        with session_scope(context.sessions) as session:
            warning = f"the job was not logged to MLflow at {where}: {reason}"
            add_warnings(session, job_id, [warning])
        return None


def redacted(uri: str) -> str:
    """The tracking URI without the credentials it may hold (`https://user:token@host`)."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _client(context: JobContext) -> Any:
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )
    from mlflow.tracking import MlflowClient

    # mlflow's own defaults retry an unreachable server for minutes while a worker has jobs to
    # run; mlflow reads these two from the environment at each request.
    MLFLOW_HTTP_REQUEST_MAX_RETRIES.set(context.mlflow_request_retries)
    MLFLOW_HTTP_REQUEST_TIMEOUT.set(max(1, round(context.mlflow_request_timeout_s)))
    return MlflowClient(tracking_uri=context.mlflow_tracking_uri)


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # created meanwhile by another worker
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _log_job(context: JobContext, job_id: str) -> str | None:
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id, include=JOB_PARTS)
        if job.mlflow_run_id is not None or job.state not in TERMINAL_STATES:
            return job.mlflow_run_id
        snapshot = _JobSnapshot(job)
    client = _client(context)
    experiment_id = _experiment_id(client, context.mlflow_experiment)
    parent = None
    if snapshot.sweep_id is not None:
        parent = _sweep_run(context, client, experiment_id, snapshot.sweep_id)
    tags = snapshot.tags()
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(
        experiment_id,
        start_time=_millis(snapshot.started_at),
        tags=tags,
        run_name=snapshot.run_name,
    )
    run_id = str(run.info.run_id)
    _log_values(client, run_id, snapshot.params(), snapshot.metrics())
    problems = _log_artifacts(client, run_id, snapshot)
    client.set_terminated(
        run_id, RUN_STATUS.get(snapshot.state, "KILLED"), end_time=_millis(snapshot.finished_at)
    )
    with session_scope(context.sessions) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.mlflow_run_id.is_(None))
            .values(mlflow_run_id=run_id)
        )
        session.commit()
        if problems:
            add_warnings(session, job_id, problems)
    logger.info("job=%s logged to MLflow run=%s", job_id, run_id)
    if snapshot.sweep_id is not None and parent is not None:
        _end_sweep_run_when_done(context, client, snapshot.sweep_id, parent)
    return run_id


class _JobSnapshot:
    """What the run is made of, read from the row while its session is open."""

    def __init__(self, job: Job) -> None:
        self.id = job.id
        self.name = job.name
        self.user_tags = dict(job.tags or {})
        self.state = job.state
        self.spec = dict(job.spec)
        self.sweep_id = job.sweep_id
        self.epochs = list(job.epochs or [])
        self.metrics_json = job.metrics
        self.model_card = job.model_card
        self.effective = job.effective_hyperparameters or {}
        self.e0s = job.e0s or {}
        self.error = job.error
        self.started_at = job.started_at or job.created_at
        self.finished_at = job.finished_at
        self.report = job_report(job) if job.state is JobState.SUCCEEDED else None

    @property
    def run_name(self) -> str:
        return self.name or f"mlft-{self.id[:8]}"

    def tags(self) -> dict[str, str]:
        strategy = (self.spec.get("strategy") or {}).get("name")
        tags = {
            **self.user_tags,
            "mlft.job_id": self.id,
            "mlft.state": self.state.value,
            "mlft.strategy": str(strategy),
            "mlft.foundation": str(self.spec.get("foundation_model")),
        }
        if self.name:
            tags["mlft.name"] = self.name
        if self.sweep_id:
            tags["mlft.sweep_id"] = self.sweep_id
        if self.error:
            tags["mlft.error"] = self.error[:MAX_PARAM_CHARS]
        return tags

    def params(self) -> dict[str, str]:
        spec = {key: value for key, value in self.spec.items() if key not in LABEL_FIELDS}
        params = flatten(spec)
        params.update(flatten(self.effective, "effective"))
        if self.e0s.get("method"):
            params["e0s.method_used"] = self.e0s["method"]
        return {key: _param_text(value) for key, value in params.items()}

    def metrics(self) -> list[tuple[str, float, int]]:
        """(key, value, step): each trained epoch's validation record (the step is the epoch),
        then the evaluation's scalars at the last step."""
        values = []
        last = 0
        for entry in self.epochs:
            epoch = entry.get("epoch")
            if epoch is None:  # mace's validation before training
                continue
            last = max(last, int(epoch))
            prefix = "" if entry.get("head") in (None, "target", "Default") else f"{entry['head']}."
            for key, value in entry.items():
                if key not in ("epoch", "head") and _is_number(value):
                    values.append((f"{prefix}{key}", float(value), int(epoch)))
        for key, value in flatten(self.metrics_json or {}).items():
            if _is_number(value):
                values.append((key, float(value), last))
        return values


def _log_values(
    client: Any, run_id: str, params: dict[str, str], metrics: list[tuple[str, float, int]]
) -> None:
    from mlflow.entities import Metric, Param

    items = [Param(_key(key), value) for key, value in params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
    stamp = _millis(None)
    points = [Metric(_key(key), value, stamp, step) for key, value, step in metrics]
    for start in range(0, len(points), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=points[start : start + MAX_METRICS_PER_BATCH])


def _log_artifacts(client: Any, run_id: str, snapshot: _JobSnapshot) -> list[str]:
    """The model card (JSON and Markdown) and the report (JSON and HTML); a part that cannot be
    written is left out and named in the returned problems."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="mlft-mlflow-") as folder:
        out = Path(folder)
        card, report = snapshot.model_card, snapshot.report
        parts: dict[str, Callable[[], str]] = {}
        if card is not None:
            parts["model_card.json"] = lambda: _json(card)
            parts["model_card.md"] = lambda: render_markdown(card)
        if report is not None:
            parts["report.json"] = lambda: _json(report)
            parts["report.html"] = lambda: render_html(report)
        for name, render in parts.items():
            try:
                (out / name).write_text(render(), encoding="utf-8")
            except Exception as error:
                problems.append(f"MLflow artifact {name} not written: {error}")
        if any(out.iterdir()):
            client.log_artifacts(run_id, str(out))
    return problems


def _sweep_run(context: JobContext, client: Any, experiment_id: str, sweep_id: str) -> str:
    """The sweep's parent run, created by the first of its jobs to be logged; two workers that
    race create two and keep the one recorded first."""
    with session_scope(context.sessions) as session:
        sweep = get_sweep(session, sweep_id)
        if sweep.mlflow_run_id is not None:
            return sweep.mlflow_run_id
        name, user_tags, spec = sweep.name, dict(sweep.tags or {}), dict(sweep.spec)
    tags = {**user_tags, "mlft.sweep_id": sweep_id}
    run = client.create_run(experiment_id, tags=tags, run_name=name or f"sweep-{sweep_id[:8]}")
    run_id = str(run.info.run_id)
    sweep_params = {key: value for key, value in spec.items() if key not in ("base", *LABEL_FIELDS)}
    _log_values(client, run_id, {k: _param_text(v) for k, v in flatten(sweep_params).items()}, [])
    with session_scope(context.sessions) as session:
        recorded_here = update(Sweep).where(Sweep.id == sweep_id, Sweep.mlflow_run_id.is_(None))
        result = session.execute(recorded_here.values(mlflow_run_id=run_id))
        won = cast(CursorResult[Any], result).rowcount
        session.commit()
        if won:
            return run_id
        recorded = get_sweep(session, sweep_id).mlflow_run_id
    client.delete_run(run_id)
    assert recorded is not None
    return recorded


def _end_sweep_run_when_done(context: JobContext, client: Any, sweep_id: str, parent: str) -> None:
    """Once every job of the sweep has ended: its comparison as an artifact, the run ended."""
    with session_scope(context.sessions) as session:
        summary = sweep_summary(session, sweep_id)
    if not summary["finished"]:
        return
    with tempfile.TemporaryDirectory(prefix="mlft-mlflow-") as folder:
        (Path(folder) / "sweep.json").write_text(_json(summary), encoding="utf-8")
        client.log_artifacts(parent, folder)
    choice = (summary.get("recommendation") or {}).get("single_system") or {}
    if choice.get("strategy"):
        client.set_tag(parent, "mlft.recommended_strategy", choice["strategy"])
    client.set_terminated(parent, "FINISHED")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (`strategy.rank`); lists stay whole."""
    if not isinstance(value, dict):
        return {prefix: value} if prefix else {}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_CHARS]


def _key(key: str) -> str:
    return _KEY_UNSAFE.sub("_", key)[:250]


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def _millis(moment: datetime | None) -> int:
    if moment is None:
        moment = datetime.now().astimezone()
    return int(moment.timestamp() * 1000)
