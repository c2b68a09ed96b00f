"""The lab's machine records: what `up` started, persisted as JSON for `down` elsewhere.

Every model is frozen with extra="forbid": a record is replaced (model_copy), never
mutated, and a state file written by another version fails loudly instead of being
half-understood.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

# A hostname label (RFC 1123), lower case: it becomes /etc/hostname and an ssh alias.
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class MachineState(StrEnum):
    """What a machine is doing right now, as far as the host can tell."""

    RUNNING = "running"    # nspawn and the machine's init are alive
    FROZEN = "frozen"      # running, but every process is stopped by the freezer (a fault)
    STOPPED = "stopped"    # not running, and the record says it should not
    CRASHED = "crashed"    # not running, but the record says it should


class Desired(StrEnum):
    """What the lab wants a machine to be doing."""

    RUNNING = "running"
    STOPPED = "stopped"


class MachineRecord(BaseModel):
    """One machine: its identity, where its files are, and the processes that run it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str                  # the hostname, what callers use (e.g. "site1-cs1")
    machine: str               # nspawn's -M name: short and unique on this computer (see net.machine_name)
    index: int                 # position in the plan (address = network[2 + index])
    address: IPv4Address
    veth: str                  # host-side veth nspawn creates: "vb-" + machine
    upper: Path                # overlay upper dir: this machine's changes over the base
    log: Path                  # nspawn's stdout: the machine's console
    host_key_pub: str          # "ssh-ed25519 AAAA..." written by the orchestrator before boot
    machine_id: str
    desired: Desired = Desired.RUNNING
    nspawn_pid: int | None = None
    init_pid: int | None = None   # the machine's systemd as seen from the host (for nsenter)
    # The machine's cgroup dirs by hierarchy, as created at start: they sit under the
    # starting process's own groups, so another process must not recompute them.
    cgroups: dict[str, Path] = {}
    started_at: float | None = None
    ready_seconds: float | None = None   # boot to readiness, last start

    @field_validator("name")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not HOSTNAME_RE.match(value):
            raise ValueError(f"machine name {value!r} is not a lower-case hostname label")
        return value


class LabRecord(BaseModel):
    """Everything needed to inspect or tear down a machine lab from any process."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bridge: str
    network: IPv4Network
    host_address: IPv4Address
    rootfs: Path               # the shared read-only base image
    user: str
    bridge_created: bool = False   # only a bridge we created is ours to delete
    machines: dict[str, MachineRecord] = {}

    @staticmethod
    def path(state_dir: Path) -> Path:
        """Where the record lives in the state dir."""
        return state_dir / "machines.json"

    @classmethod
    def load(cls, state_dir: Path) -> LabRecord | None:
        """The record, or None when no machine lab was brought up in this state dir."""
        try:
            return cls.model_validate(json.loads(cls.path(state_dir).read_text()))
        except FileNotFoundError:
            return None

    def save(self, state_dir: Path) -> None:
        """Write atomically (temp + rename): a killed `up` never leaves half a record."""
        state_dir.mkdir(parents=True, exist_ok=True)
        # A temp name of its own: two writers (threads of one provider process) never share one.
        fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".machines.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.model_dump_json(indent=2))
            os.replace(tmp, self.path(state_dir))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def with_machine(self, record: MachineRecord) -> LabRecord:
        """A copy with one machine's record replaced."""
        return self.model_copy(update={"machines": {**self.machines, record.name: record}})


class MachineStatus(BaseModel):
    """status(): a machine's state and the figures a caller may want to show."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    machine: str
    address: IPv4Address
    state: MachineState
    nspawn_pid: int | None
    init_pid: int | None
    memory_bytes: int | None   # the machine's memory cgroup usage (None when unknown)
