"""Liveness and readiness for orchestrators (Docker, Kubernetes, load balancers)."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import ContextDep, SettingsDep
from api.queue import broker_of, broker_probe
from api.schemas import Liveness, Readiness
from core.service.health import Check, database_probe, run_check, storage_probe, workers_probe

router = APIRouter(tags=["health"])
# A dependency that is down is usually back within seconds (a restart, a worker starting).
NOT_READY_RETRY_AFTER_SECONDS = 10


@router.get("/healthz", response_model=Liveness)
def liveness() -> Liveness:
    """The process answers; says nothing about its dependencies (see /readyz)."""
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {"description": "a dependency is unreachable or no worker alive", "model": Readiness}
    },
)
def readiness(
    request: Request, context: ContextDep, settings: SettingsDep, workers: bool = True
) -> JSONResponse:
    """Database reachable, broker reachable, artifact storage writable and a worker alive (a
    heartbeat within the job lease); 503 naming what is not. `workers=false` leaves the worker
    check out, for orchestrators that start the workers only once the API is up."""
    checks: list[Check] = [
        run_check("database", database_probe(context.sessions)),
        run_check("broker", lambda: broker_probe(broker_of(request, settings))),
        run_check("storage", storage_probe(context.storage)),
    ]
    if workers:
        checks.append(
            run_check("workers", workers_probe(context.sessions, settings.job_lease_seconds))
        )
    ready = all(check.ok for check in checks)
    return JSONResponse(
        status_code=200 if ready else 503,
        # Every 503 says when to ask again (a load balancer or client backing off reads it).
        headers=None if ready else {"Retry-After": str(NOT_READY_RETRY_AFTER_SECONDS)},
        content={
            "status": "ready" if ready else "not ready",
            "checks": {check.name: check.detail for check in checks},
        },
    )
