"""`mlft-server`: the API in one uvicorn process per core, sharing one port.

Python serves requests on one core per process, so one process leaves every other core idle
under a lab's dashboards (issue 26). What must happen once per machine happens in the parent,
before its API processes start: the schema migration and the models folder's import (each
process would otherwise race the others on them) and, in the embedded default, the one local
worker and the demo foundation's build. The API processes are told not to start their own.
"""

import os

import uvicorn

from api.app import machine_services, prepare_storage
from core.config import Settings
from core.workflows.context import context_from_settings

APP_FACTORY = "api.app:create_app"
# Read by each API process's Settings: the parent started the embedded worker and the build.
CHILD_ENVIRONMENT = {"MLFT_START_EMBEDDED_WORKER": "false", "MLFT_BUILD_DEMO_FOUNDATION": "false"}


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    if workers <= 1:
        # One process: create_app's own lifespan starts the embedded worker, as in tests.
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port)
        return
    prepare_storage(settings, context_from_settings(settings).registry)
    start_worker = settings.embedded and settings.start_embedded_worker
    with machine_services(settings, start_worker):
        # uvicorn spawns its API processes afresh; they read the settings from this environment.
        os.environ.update(CHILD_ENVIRONMENT)
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers)
