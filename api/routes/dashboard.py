"""The web dashboard: one static page at `/` and its assets under `/dashboard/`.

Plain files, no build step; the page talks to the same JSON API with relative URLs, so it also
works behind a path prefix.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
ASSETS_PATH = "/dashboard"

router = APIRouter(include_in_schema=False)


@router.get("/")
def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def assets() -> StaticFiles:
    return StaticFiles(directory=DASHBOARD_DIR)
