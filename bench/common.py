"""What every benchmark shares: the demo foundation and the results file."""

import os
import platform
import re
from datetime import date
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def models_folder() -> Path:
    """Where benchmarks keep their foundations: the folder the tests use as well."""
    return Path(os.environ.get("MLFT_MODELS_DIR", REPO_ROOT / "var" / "test-foundations"))


def demo_foundation_path() -> Path:
    """The demo foundation, built once into models_folder()."""
    from core.science.demo_foundation import (
        DEMO_FOUNDATION_NAME,
        build_demo_foundation,
        install_shipped_demo_foundation,
    )

    path = models_folder() / f"{DEMO_FOUNDATION_NAME}.model"
    if not path.is_file() and not install_shipped_demo_foundation(path):
        build_demo_foundation(path)
    return path


def machine_description() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def write_section(out: Path, title: str, rows: list[tuple[str, str]], *, command: str) -> None:
    """Replace (or add) this benchmark's section of the results file, keeping the others."""
    replace_section(
        out,
        title,
        "\n".join(
            [
                f"## {title}",
                "",
                f"Run {date.today().isoformat()} on {machine_description()}.",
                f"Repeat: `{command}`",
                "",
                "| measure | value |",
                "|---|---|",
            ]
            + [f"| {name} | {value} |" for name, value in rows]
        )
        + "\n",
    )


def replace_section(out: Path, title: str, body: str) -> None:
    """Replace the section `## title` of the results file with `body` (which starts with that
    heading), or add it at the end; the other sections are kept."""
    text = out.read_text() if out.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"## {re.escape(title)}\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text)  # a function: body is not a template
    else:
        text = text.rstrip() + "\n\n" + body
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.rstrip() + "\n")
