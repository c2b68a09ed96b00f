"""Release variants the tests build from the stock release (a copy with one change)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from orchestrator.release.bundle import build_bundle
from tests.conftest import REPO

STOCK = REPO / "releases" / "stock"


def make_release(store: Path, version: str, mutate: Callable[[Path], None] | None = None) -> Path:
    """Copy the stock source, apply `mutate` to the copy, build `callserver-<version>` in `store`."""
    src = store / "src" / version
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(STOCK, src)
    if mutate is not None:
        mutate(src)
    return build_bundle(source=src, version=version, out_dir=store)


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact snippet (fails loudly if the stock release changed)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def syntax_error(src: Path) -> None:
    """A config `kamailio -c` rejects."""
    edit(src / "routing.cfg", "route[EMERGENCY] {", "route[EMERGENCY] {\n\tthis is not kamailio;")


def dies_at_start(src: Path) -> None:
    """Passes `kamailio -c`, dies at module init: a dispatcher list file that does not exist."""
    edit(src / "kamailio.cfg", 'loadmodule "counters.so"\n',
         'loadmodule "counters.so"\nloadmodule "dispatcher.so"\n'
         'modparam("dispatcher", "list_file", "/nonexistent/callfleet/dispatcher.list")\n')
