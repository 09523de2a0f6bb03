"""The report of a job or an evaluation: its JSON (core.reporting.report_models.JobReport and
EvaluationReport), rendered to HTML by core.reporting.reports.

Stored sections are validated on the way out: a row that no longer fits its model fails here,
not in a client; rows written before a field existed fit (every field is optional)."""

from datetime import datetime, timezone
from typing import Any

from core.reporting.report_models import EvaluationReport, EvaluationSections, JobReport
from core.reporting.verdicts import verdicts_json
from core.science.strategy_table import traits_of
from core.service.models import Evaluation, Job


def job_report(job: Job) -> dict[str, Any]:
    """The job's report as JSON (the shape of JobReport), its verdicts graded once."""
    return _with_verdicts(_job_sections(job))


def job_verdicts(metrics: dict[str, Any] | None, warnings: list[str]) -> list[dict[str, str]]:
    """The verdicts job_report opens with, from the job's metrics and warnings alone: what the
    job's row keeps for GET /jobs/{id}."""
    sections = EvaluationSections.from_json(metrics)
    measured = {**sections.to_json(), "warnings": warnings + sections.measured_warnings()}
    return verdicts_json(measured)


def _with_verdicts(report: dict[str, Any]) -> dict[str, Any]:
    # Graded here, once, so the dashboard shows the HTML report's verdicts
    # (core.reporting.verdicts): [{label, value, level}], level "good", "warn" or "bad".
    return {**report, "verdicts": verdicts_json(report)}


def _job_sections(job: Job) -> dict[str, Any]:
    spec = job.spec
    strategy = spec["strategy"]["name"]
    sections = EvaluationSections.from_json(job.metrics)
    values = {
        "title": f"mlft job {job.id}: {strategy} "
        + (
            f"fine-tune of {spec['foundation_model']}"
            if traits_of(strategy).foundation
            else "training"
        ),
        "generated_at": _now(),
        "job": {
            "id": job.id,
            "state": job.state.value,
            "strategy": strategy,
            "foundation_model": spec["foundation_model"],
            "train_dataset": spec["train_dataset"],
            "test_dataset": spec.get("test_dataset") or _held_out(job),
            "created_at": _iso(job.created_at),
            # The run, not the wait in the queue, is what "Duration" means.
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "effective_hyperparameters": job.effective_hyperparameters,
        },
        "warnings": job.warnings + sections.measured_warnings(),
        "checks": job.checks,
        "preflight": job.preflight,
        "split": job.split,
        "cost": job.cost,
        "exports": job.exports,
        "e0s": job.e0s,
        "learning_curve": job.epochs,
        **sections.to_json(),
    }
    return JobReport.model_validate(values).to_json()


def evaluation_report(evaluation: Evaluation) -> dict[str, Any]:
    """The evaluation's report as JSON (the shape of EvaluationReport), its verdicts graded once."""
    model = evaluation.spec["model"]
    name = model.get("job") or model.get("foundation_model")
    sections = EvaluationSections.from_json(evaluation.report)
    return _with_verdicts(
        EvaluationReport.model_validate(
            {
                "title": f"mlft evaluation {evaluation.id} of {name}",
                "generated_at": _now(),
                "warnings": sections.measured_warnings(),
                **sections.to_json(),
            }
        ).to_json()
    )


def _held_out(job: Job) -> str | None:
    """A test set split off the training data is test data too (issue 18 item 9)."""
    fraction = (job.spec.get("split") or {}).get("test_fraction") or 0
    if not fraction:
        return None
    count = ((job.split or {}).get("counts") or {}).get("test")
    held = f"{count} configurations" if count is not None else f"{fraction:.0%}"
    return f"{held} held out of the training data"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None
