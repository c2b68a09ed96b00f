"""One rollout per estate on this host, whichever journal drives it.

The rollout lock lives in a journal, and each checkout has its own default journal
(beside its inventory): two checkouts of one estate would each find their journal free
and both start a rollout. A small registry, one file per estate name in a directory
shared by every checkout of this user on this host, records which journal's run holds
the estate; a claim is refused while that run is still going, and taken over when the
run has ended or its journal is gone. (Across hosts, the rollout lock of a shared PostgreSQL
journal is the one lock every runner sees.)
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError


class EstateClaim(BaseModel):
    """Which run of which journal holds an estate."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    estate: str
    journal: str
    run: str


def lock_dir() -> Path:
    """$CALLFLEET_LOCK_DIR, else a per-user directory under /var/tmp (kept across reboots: a
    rollout that bakes for days holds its estate without any live process)."""
    env = os.environ.get("CALLFLEET_LOCK_DIR")
    return Path(env) if env else Path(f"/var/tmp/callfleet-locks-{os.getuid()}")


@contextmanager
def _registry(estate: str) -> Iterator[Path]:
    d = lock_dir()
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (d / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # claims are short: wait for the other writer
        yield d / f"{estate}.json"


def _read(path: Path) -> EstateClaim | None:
    try:
        return EstateClaim.model_validate(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, ValidationError):
        return None


def claim(*, estate: str, journal: str, run: str, still_running: Callable[[EstateClaim], bool]) -> EstateClaim | None:
    """Record that `run` of `journal` (its store key: an absolute file, or a URL) holds `estate`.
    Returns the other claim that still holds it (and records nothing), or None when the claim was taken."""
    with _registry(estate) as path:
        held = _read(path)
        if held is not None and still_running(held):
            # A live run of another journal holds the estate. A live run of this very journal
            # keeps its claim: the journal's own lock decides between the two runs.
            return held if held.journal != journal else None
        tmp = path.with_suffix(".tmp")
        tmp.write_text(EstateClaim(estate=estate, journal=journal, run=run).model_dump_json())
        tmp.replace(path)
        return None


def release(*, estate: str, journal: str, run: str) -> None:
    """Drop the claim if it is this run's (an ended run frees its estate)."""
    with _registry(estate) as path:
        held = _read(path)
        if held is not None and held.journal == journal and held.run == run:
            path.unlink(missing_ok=True)
