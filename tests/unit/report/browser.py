"""Headless chromium for the report's tests: the DOM it builds from a page, and screenshots kept
as test artefacts (tests/artifacts/, ignored by git). Usable from lab tests too: render a run's
report with `callfleet report RUN --html FILE`, then `dump_dom(FILE, ...)`."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import REPO

ARTIFACTS = REPO / "tests" / "artifacts"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    """An element of the dumped DOM: tag, attributes, the text inside it, its classes."""

    tag: str
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)

    @property
    def content(self) -> str:
        return " ".join("".join(self.text).split())

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Dom(HTMLParser):
    """Every element, with the text of its whole subtree (enough to query a dumped DOM)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(el)
        if tag not in VOID:
            self._open.append(el)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for el in self._open:
            el.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Elements with this tag (any when None) and these attribute values (`data_x` is `data-x`)."""
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [e for e in self.elements if (tag is None or e.tag == tag)
                and all(e.attrs.get(k) == v for k, v in want.items())]


def chromium() -> str:
    """Debian's chromium; a failure (never a skip) when it is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make deps` (Debian package chromium) - the report's browser test "
                    "needs it")
    return path


def browser(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless chromium with its own profile (tests may run side by side)."""
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-extensions", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90, check=False)


def dump_dom(page: Path, profile: Path) -> Dom:
    """The page as chromium built it."""
    dumped = browser("--dump-dom", page.as_uri(), profile=profile)
    assert dumped.returncode == 0 and "<body" in dumped.stdout, dumped.stderr[-2000:]
    return Dom(dumped.stdout)


def screenshot(page: Path, shot: Path, profile: Path, *, keep_as: str = "report") -> Path:
    """A PNG of the page (1280 px wide), copied to tests/artifacts/KEEP_AS.png with the page."""
    taken = browser(f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars", page.as_uri(),
                    profile=profile)
    assert taken.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", taken.stderr[-2000:]
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / f"{keep_as}.png")
    shutil.copy(page, ARTIFACTS / f"{keep_as}.html")
    return shot
