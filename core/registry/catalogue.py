"""The names of foundation models: what a name may be, the published models mace-torch can
download (and where it caches them), the demo model's name, and the hash that pins a file."""

import hashlib
import os
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from core.errors import InvalidSpecError

DEMO_FOUNDATION_NAME = "mace-demo-emt"


def _mace_mp(variant: str) -> Callable[[], str]:
    def download() -> str:
        from mace.calculators.foundations_models import download_mace_mp_checkpoint

        return download_mace_mp_checkpoint(variant)

    return download


def _mace_off(size: str) -> Callable[[], str]:
    def download() -> str:
        import torch
        from mace.calculators.foundations_models import mace_off
        from mace.tools.utils import get_cache_dir

        # mace_off downloads into mace's cache and returns the module; keep a pickled copy so
        # later jobs load it like any other foundation.
        path = Path(get_cache_dir()) / f"mlft-mace-off23-{size}.model"
        if not path.is_file():
            torch.save(mace_off(model=size, device="cpu", return_raw_model=True), path)
        return str(path)

    return download


PUBLISHED: dict[str, Callable[[], str]] = {
    "mace-mp-0-small": _mace_mp("small"),
    "mace-mp-0-medium": _mace_mp("medium"),
    "mace-mp-0-large": _mace_mp("large"),
    "mace-mp-0b3-medium": _mace_mp("medium-0b3"),
    "mace-mpa-0-medium": _mace_mp("medium-mpa-0"),
    "mace-omat-0-small": _mace_mp("small-omat-0"),
    "mace-omat-0-medium": _mace_mp("medium-omat-0"),
    "mace-off23-small": _mace_off("small"),
    "mace-off23-medium": _mace_off("medium"),
    "mace-off23-large": _mace_off("large"),
}


# Where each published model comes from: mace-torch's URL table (family, key), so whether it is
# cached here can be told without downloading it.
PUBLISHED_SOURCES: dict[str, tuple[str, str]] = {
    name: ("off" if name.startswith("mace-off23-") else "mp", key)
    for name, key in {
        "mace-mp-0-small": "small",
        "mace-mp-0-medium": "medium",
        "mace-mp-0-large": "large",
        "mace-mp-0b3-medium": "medium-0b3",
        "mace-mpa-0-medium": "medium-mpa-0",
        "mace-omat-0-small": "small-omat-0",
        "mace-omat-0-medium": "medium-omat-0",
        "mace-off23-small": "small",
        "mace-off23-medium": "medium",
        "mace-off23-large": "large",
    }.items()
}


def published_source(name: str) -> tuple[str, Path]:
    """The download URL of a published model and where mace-torch (or mlft) caches it."""
    from mace.calculators.foundations_models import mace_mp_urls, mace_off_urls
    from mace.tools.utils import get_cache_dir

    family, key = PUBLISHED_SOURCES[name]
    if family == "off":
        return mace_off_urls[key], Path(get_cache_dir()) / f"mlft-mace-off23-{key}.model"
    url = mace_mp_urls[key]
    # mace's download_mace_mp_checkpoint names the cached file after the URL this way.
    cached = "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")
    return url, Path(get_cache_dir()) / cached


def reachable(url: str, timeout_s: float) -> bool:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# A registry key, never a path: no '/', '\', '..', NUL or leading dot can get through, since the
# name becomes part of a file name in the models folder.
FOUNDATION_NAME_PATTERN = r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$"
FOUNDATION_NAME_MAX_LENGTH = 100
_FOUNDATION_NAME = re.compile(FOUNDATION_NAME_PATTERN)


def foundation_name_problem(name: str) -> str | None:
    """Why `name` cannot be a foundation model name, or None when it can."""
    if len(name) > FOUNDATION_NAME_MAX_LENGTH or not _FOUNDATION_NAME.fullmatch(name):
        return (
            f"foundation model name {name[:120]!r} is not a registry name: use up to "
            f"{FOUNDATION_NAME_MAX_LENGTH} letters and digits, separated by single '.', '_' or "
            "'-' (no paths); GET /foundation-models lists the names"
        )
    return None


def require_foundation_name(name: str) -> str:
    problem = foundation_name_problem(name)
    if problem is not None:
        raise InvalidSpecError(problem)
    return name


def _checked_name(name: str) -> str:
    problem = foundation_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


# The type of every `foundation_model` field of a request: validated before any lookup.
FoundationName = Annotated[
    str,
    # Checked by _checked_name, whose message says what a name is; the schema shows the rule.
    AfterValidator(_checked_name),
    Field(
        json_schema_extra={
            "pattern": FOUNDATION_NAME_PATTERN,
            "maxLength": FOUNDATION_NAME_MAX_LENGTH,
        }
    ),
]
