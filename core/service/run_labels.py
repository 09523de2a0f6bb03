"""A run's name and tags: how a researcher finds a job or a sweep among hundreds (issue 28).

Tags are a string-to-string map, as MLflow's run tags and OpenAI's `metadata` are, with bounds
like theirs so a tag fits a database index, a URL (`?tag=key=value`) and an MLflow tag.
"""

import re
from typing import Annotated

from pydantic import AfterValidator, Field

MAX_NAME_CHARS = 200
MAX_TAGS = 32
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 256
# Letters, digits and _ . - / : — no "=" (a filter is `tag=key=value`), no spaces.
TAG_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/:]*")
# The service writes its own tags under these in MLflow (mlft.job_id, mlflow.runName).
RESERVED_TAG_PREFIXES = ("mlft.", "mlflow.")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("a name needs at least one character that is not a space")
    if _CONTROL.search(value):
        raise ValueError("a name is one line without control characters")
    return value


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags, got {len(tags)}")
    for key, value in tags.items():
        if len(key) > MAX_TAG_KEY_CHARS or not TAG_KEY_PATTERN.fullmatch(key):
            raise ValueError(
                f"tag key {key[:MAX_TAG_KEY_CHARS]!r}: 1-{MAX_TAG_KEY_CHARS} letters, digits "
                "or _ . - / : starting with a letter or digit"
            )
        if key.startswith(RESERVED_TAG_PREFIXES):
            raise ValueError(f"tag key {key!r}: the prefixes mlft. and mlflow. are the service's")
        if len(value) > MAX_TAG_VALUE_CHARS:
            raise ValueError(f"tag {key!r}: a value has at most {MAX_TAG_VALUE_CHARS} characters")
        if _CONTROL.search(value):
            raise ValueError(f"tag {key!r}: a value is one line without control characters")
    return tags


RunName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_CHARS, examples=["cu-campaign lora r8"]),
    AfterValidator(_check_name),
]
RunTags = Annotated[
    dict[str, str],
    Field(examples=[{"campaign": "Cu", "owner": "alice"}]),
    AfterValidator(_check_tags),
]
