"""Writing a page to a file (the CLI's `report --html`, `report monthly --html` and
`rollout status --html`)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import InvalidInput
from orchestrator.report.model import RolloutReport


def write_html(report: RolloutReport, path: Path, *, source: str) -> Path:
    """Render `report` to `path` (InvalidInput when it cannot be written); returns it absolute."""
    from orchestrator.report.html import render  # matplotlib loads only when a page is drawn

    return write_page(render(report, source=source), path)


def write_page(html: str, path: Path) -> Path:
    """Write a rendered page (InvalidInput when it cannot be written); returns the path absolute."""
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write the report ({exc.strerror or exc})") from None
    return path.absolute()
