"""Each report test claims the example estate in a lock directory of its own: a run left in
progress (on purpose, or by a failed assertion) never blocks another test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def own_estate_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLEET_LOCK_DIR", str(tmp_path / "estate-locks"))
