"""create_app(): the FastAPI application, its database, storage and (embedded) worker."""

import logging
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.deps import Dispatcher, get_project_id
from api.errors import install_error_handlers
from api.openapi_links import install_links
from api.queue import WorkerSupervisor, celery_sender, start_embedded_worker
from api.routes import dashboard, datasets, evaluations, events, foundations, jobs, projects, sweeps
from api.routes import health as health_routes
from api.routes import metrics as metrics_routes
from api.routes import preflight as preflight_routes
from api.routes import promotion as promotion_routes
from api.routes import replay_sets as replay_sets_routes
from api.routes import strategies as strategies_routes
from api.schemas import Liveness
from core.config import Settings, get_settings
from core.registry.foundations import FoundationRegistry
from core.service.auth import TokenCache
from core.service.db import migrate, reading_sessions
from core.workflows.context import context_from_settings

logger = logging.getLogger(__name__)
# `?access_token=` (the event stream's) in a request line that an access log writes.
ACCESS_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s\"']*", re.IGNORECASE)
# uvicorn writes one line per request, path and query string included, to this logger.
ACCESS_LOGGERS = ("uvicorn.access", "uvicorn.error")


class RedactAccessTokens(logging.Filter):
    """Tokens never reach a log: the query parameter's value is replaced before formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact(text: str) -> str:
    return ACCESS_TOKEN_IN_URL.sub(r"\1[redacted]", text)


def redact_tokens_in_access_logs() -> None:
    for name in ACCESS_LOGGERS:
        access_logger = logging.getLogger(name)
        if not any(isinstance(item, RedactAccessTokens) for item in access_logger.filters):
            access_logger.addFilter(RedactAccessTokens())


def create_app(
    settings: Settings | None = None,
    *,
    enqueue: Callable[[str], None] | None = None,
    start_worker: bool | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    redact_tokens_in_access_logs()
    if start_worker is None:
        start_worker = settings.embedded and settings.start_embedded_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_storage(settings, app.state.context.registry)
        with machine_services(settings, start_worker) as supervisor:
            app.state.worker_supervisor = supervisor
            yield

    app = FastAPI(
        title="mlft",
        summary="Fine-tune MACE foundation models: upload data, pick a strategy, get a model.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.context = context_from_settings(settings)
    app.state.reading_sessions = reading_sessions(app.state.context.sessions)
    app.state.token_cache = TokenCache(settings.token_cache_seconds)
    # The sweeper sends what the broker could not take within its grace and a sweep period.
    retry_after = int(settings.dispatch_grace_seconds + settings.job_lease_seconds)
    app.state.dispatcher = Dispatcher(celery_sender(settings, enqueue), retry_after)
    install_error_handlers(app)
    if settings.cors_origins:
        # Browser front ends on other origins; the bearer token travels in Authorization.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    # Data routes act inside the caller's project: the admin token alone gets 403 there.
    in_project = [Depends(get_project_id)]
    for module in (datasets, jobs, events, evaluations, sweeps):
        app.include_router(module.router, dependencies=in_project)
    for module in (replay_sets_routes, preflight_routes):
        app.include_router(module.router, dependencies=in_project)
    # Promotion: the admin promotes any project's job, a project token its own.
    for module in (foundations, promotion_routes, strategies_routes, projects, dashboard):
        app.include_router(module.router)
    app.include_router(health_routes.router)
    app.include_router(metrics_routes.router)
    app.mount(dashboard.ASSETS_PATH, dashboard.assets(), name="dashboard")
    install_links(app)

    @app.get("/health", tags=["health"], response_model=Liveness)
    def health() -> Liveness:
        return Liveness(status="ok")

    return app


def prepare_storage(settings: Settings, registry: FoundationRegistry) -> None:
    """The database schema, and the models folder's pinned files in the registry; safe to run
    again (each API process runs it when it starts, after `mlft-server` ran it once)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    # Pinned files an operator dropped in the models folder become visible to every worker.
    registry.import_models_folder()


@contextmanager
def machine_services(settings: Settings, start_worker: bool) -> Iterator[WorkerSupervisor | None]:
    """What runs once per machine beside the API: the embedded worker (and, on first start, the
    demo foundation's build). Several API processes (`mlft-server`) share the one their parent
    started; a lone API process (`create_app`) starts its own."""
    supervisor = build = None
    if start_worker:
        supervisor = start_embedded_worker(settings)
        if settings.build_demo_foundation:
            build = _build_demo_foundation_in_background(settings)
    try:
        yield supervisor
    finally:
        if supervisor is not None:
            supervisor.stop()
        if build is not None and build.poll() is None:
            build.terminate()  # the next start builds it again


def _build_demo_foundation_in_background(settings: Settings) -> subprocess.Popen | None:
    """First start: the shipped demo foundation is installed at once; were it missing or not the
    pinned file, the API answers while it trains beside it: GET /foundation-models lists it as
    building, and jobs naming it get 503 until it is ready."""
    from core.science.demo_foundation import (
        DEMO_FOUNDATION_NAME,
        install_shipped_demo_foundation,
        start_background_build,
    )

    model = settings.resolved_models_dir / f"{DEMO_FOUNDATION_NAME}.model"
    if not model.is_file() and install_shipped_demo_foundation(model):
        return None
    log_file = settings.data_dir / "logs" / "demo-foundation.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as log:
        return start_background_build(model, log)
