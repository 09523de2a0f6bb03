"""api/responses.py: one way to send a stored artifact (or a refusal that says why) and one way to
answer a JSON route in HTML or Markdown."""

from pathlib import Path

import pytest

from api.responses import in_format, stored_file
from core.artifacts.storage import LocalStorage
from core.errors import ArtifactMissingError


def test_a_stored_artifact_is_sent_under_its_download_name(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    source = tmp_path / "model"
    source.write_bytes(b"weights")
    storage.put_file("jobs/j1/model.model", source)

    sent = stored_file(
        storage, "jobs/j1/model.model", missing="no", media_type="x/y", filename="mlft-j1.model"
    )

    assert Path(sent.path).read_bytes() == b"weights"
    assert sent.headers["content-disposition"] == 'attachment; filename="mlft-j1.model"'


@pytest.mark.parametrize("key", [None, "jobs/j1/absent.model"])
def test_a_missing_artifact_is_refused_saying_why(tmp_path: Path, key: str | None) -> None:
    storage = LocalStorage(tmp_path)

    with pytest.raises(ArtifactMissingError, match="job j1 has no model yet"):
        stored_file(storage, key, missing="job j1 has no model yet", media_type="x", filename="f")


def test_a_document_is_sent_as_json_unless_a_rendering_is_asked_for() -> None:
    document = {"title": "t"}

    def page(d: dict) -> str:
        return f"<h1>{d['title']}</h1>"

    def text(d: dict) -> str:
        return f"# {d['title']}"

    as_html = in_format(document, "html", html=page)
    as_md = in_format(document, "md", md=text)

    assert in_format(document, "json", html=page) is document
    assert (as_html.body, as_html.media_type) == (b"<h1>t</h1>", "text/html")
    assert (as_md.body, as_md.media_type) == (b"# t", "text/markdown")
