"""The lab's own record of its host-side processes (lab.json in the state directory):
the PSAP simulators, Prometheus and the background caller. Machines have their own
record (orchestrator/lab/machines)."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator import procs
from orchestrator.errors import InvalidInput

Kind = Literal["psap", "traffic", "prometheus"]
# frozen: a machine whose processes the freezer holds (`lab fault freeze`)
Status = Literal["running", "stopped", "crashed", "frozen"]


class Component(BaseModel):
    """One lab process: how to find it and whether it should be running."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Kind
    address: str
    pid: int | None = None
    expect: str  # substring of the command line, guards against recycled pids
    desired: Literal["running", "stopped"] = "running"
    log: str

    def current_pid(self) -> int | None:
        """The pid on record."""
        return self.pid

    def status(self) -> Status:
        """running, stopped, or crashed (should run, does not)."""
        if procs.alive(self.current_pid(), expect=self.expect):
            return "running"
        return "crashed" if self.desired == "running" else "stopped"


class LabParamsRecord(BaseModel):
    """The parameters the lab was brought up with."""

    model_config = ConfigDict(extra="forbid")
    sites: int
    hosts_per_site: int
    base: str
    background_failure: float = 0.0
    background_delay_ms: int = 0


class LabState(BaseModel):
    """Everything `lab down` and `lab status` need."""

    model_config = ConfigDict(extra="forbid")
    params: LabParamsRecord
    components: dict[str, Component] = {}

    @staticmethod
    def path(state_dir: Path) -> Path:
        """Where the record lives."""
        return state_dir / "lab.json"

    @classmethod
    def load(cls, state_dir: Path) -> LabState | None:
        """The record, or None when no lab was ever brought up here."""
        try:
            return cls.model_validate(json.loads(cls.path(state_dir).read_text()))
        except FileNotFoundError:
            return None

    def save(self, state_dir: Path) -> None:
        """Write atomically, so a killed `lab up` never leaves half a record."""
        tmp = self.path(state_dir).with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(self.path(state_dir))


def machines_dir(state_dir: Path) -> Path:
    """Where the lab's machines keep their record, overlays and SSH material."""
    return state_dir / "machines"


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """One `callfleet lab` command at a time per state dir (InvalidInput otherwise)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fh = (state_dir / "lab.lock").open("w")
    except OSError as exc:
        raise InvalidInput(f"{state_dir}: not usable as the lab's state directory ({exc.strerror})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInput(f"{state_dir}: another `callfleet lab` command is running") from None
        yield
