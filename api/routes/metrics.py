"""Prometheus metrics: jobs by state, queue depth, training epoch time."""

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from api.deps import ContextDep, SettingsDep, require_metrics_reader
from api.queue import broker_of, queue_depths
from core.config import Settings
from core.service.health import histogram, jobs_by_state, recent_epoch_seconds
from core.workflows.context import JobContext

router = APIRouter(tags=["health"])
EPOCH_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class ServiceCollector:
    """Read at scrape time from the database and the broker, so every API replica agrees."""

    def __init__(self, request: Request, context: JobContext, settings: Settings) -> None:
        self.request = request
        self.context = context
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        with self.context.sessions() as session:
            by_state = jobs_by_state(session)
            epoch_seconds = recent_epoch_seconds(session)
        jobs = GaugeMetricFamily("mlft_jobs", "Jobs by state", labels=["state"])
        for state, count in by_state.items():
            jobs.add_metric([state], count)
        yield jobs
        queues = GaugeMetricFamily(
            "mlft_queue_depth", "Tasks waiting in each broker queue", labels=["queue"]
        )
        names = [self.settings.gpu_queue, self.settings.cpu_queue]
        try:
            depths = queue_depths(broker_of(self.request, self.settings), names)
        except Exception:  # broker down: /readyz says so; the other metrics stay available
            depths = {}
        for queue, depth in depths.items():
            queues.add_metric([queue], depth)
        yield queues
        yield HistogramMetricFamily(
            "mlft_epoch_seconds",
            "Wall time of training epochs of recent jobs",
            buckets=histogram(epoch_seconds, EPOCH_BUCKETS),
            sum_value=sum(epoch_seconds),
        )


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_metrics_reader)],
    responses={
        200: {
            "description": "Prometheus metrics, in its text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        },
        401: {"description": "tokens are on: send the admin or the metrics token"},
    },
)
def metrics(request: Request, context: ContextDep, settings: SettingsDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(request, context, settings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
