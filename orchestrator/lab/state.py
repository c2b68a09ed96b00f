"""The lab's own record of what it started (lab.json in the state directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator import procs

Kind = Literal["sshd", "edge", "psap", "callserver", "traffic", "prometheus"]
Status = Literal["running", "stopped", "crashed"]


class Component(BaseModel):
    """One lab process: how to find it and whether it should be running."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Kind
    address: str
    pid: int | None = None
    pidfile: str | None = None
    expect: str  # substring of the command line, guards against recycled pids
    desired: Literal["running", "stopped"] = "running"
    log: str

    def current_pid(self) -> int | None:
        """The pid now on record (pidfile first: call servers restart under Ansible)."""
        if self.pidfile:
            return procs.read_pidfile(Path(self.pidfile))
        return self.pid

    def status(self) -> Status:
        """running, stopped, or crashed (should run, does not)."""
        if procs.alive(self.current_pid(), expect=self.expect):
            return "running"
        if self.kind == "callserver":
            # A call server stopped through its service manager leaves no pidfile;
            # a crashed one leaves it behind.
            return "crashed" if self.pidfile and Path(self.pidfile).exists() else "stopped"
        return "crashed" if self.desired == "running" else "stopped"


class LabParamsRecord(BaseModel):
    """The parameters the lab was brought up with."""

    model_config = ConfigDict(extra="forbid")
    sites: int
    hosts_per_site: int
    base: str


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
