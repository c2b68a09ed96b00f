"""`callfleet lab fault ...`: faults the lab injects into its machines, each recorded so
`lab fault clear` (and `lab down`) undoes it.

Kinds: cut a host's or a whole site's network link (the host-side veth goes down), freeze
a host (cgroup freezer: every process stops, the kernel still answers nothing), power a
host off (its systemd shuts down; clear boots it again), fill the call-server disk of a
host (a full tmpfs over /opt/callserver holding a copy of what was there; clear unmounts
it), stop kamailio.service on a host. A target naming no lab host or site is refused
(InvalidInput, exit 2) before anything changes.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.lab.machines import MachineLab
from orchestrator.lab.machines import faults as machine_faults
from orchestrator.lab.shell import RootShell
from orchestrator.lab.state import LabState, locked, machines_dir
from orchestrator.lab.topology import EDGE_MACHINE, LabParams, lab_estate

CALLSERVER_ROOT = "/opt/callserver"


class FaultKind(StrEnum):
    """What a fault does."""

    CUT = "cut"
    FREEZE = "freeze"
    POWEROFF = "poweroff"
    DISK_FULL = "disk-full"
    STOP_SERVICE = "stop-service"


# Only these reach a whole site; the others act on one host (a site-wide freeze or poweroff
# is a cut seen from the network, and a site-wide disk fault has no distinct behaviour).
SITE_KINDS = frozenset({FaultKind.CUT, FaultKind.STOP_SERVICE})


class Fault(BaseModel):
    """One injected fault, as recorded for undo."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: FaultKind
    target: str                 # what the user named: a host or a site
    machines: tuple[str, ...]   # the machines it acts on


def _path(state_dir: Path) -> Path:
    return state_dir / "faults.json"


def active(state_dir: Path) -> list[Fault]:
    """The faults injected and not yet cleared."""
    try:
        return [Fault.model_validate(f) for f in json.loads(_path(state_dir).read_text())]
    except FileNotFoundError:
        return []


def _save(state_dir: Path, faults: list[Fault]) -> None:
    tmp = _path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps([f.model_dump(mode="json") for f in faults], indent=2))
    tmp.replace(_path(state_dir))


def forget(state_dir: Path) -> None:
    """Drop the record (lab down: the machines and their links go anyway)."""
    _path(state_dir).unlink(missing_ok=True)


def _require_lab(state_dir: Path) -> LabState:
    """The lab's record; InvalidInput (nothing created) when no lab is up there."""
    state = LabState.load(state_dir) if state_dir.is_dir() else None
    if state is None or not (machines_dir(state_dir) / "machines.json").exists():
        raise InvalidInput(f"{state_dir}: no lab here; run `callfleet lab up` first")
    return state


def listing(state_dir: Path) -> list[Fault]:
    """The faults in place in the lab at `state_dir` (InvalidInput when there is no lab)."""
    state_dir = state_dir.resolve()
    _require_lab(state_dir)
    return active(state_dir)


def _lab(state_dir: Path) -> tuple[MachineLab, LabParams]:
    state = _require_lab(state_dir)
    params = LabParams(sites=state.params.sites, hosts_per_site=state.params.hosts_per_site, base=state.params.base)
    return MachineLab.open(machines_dir(state_dir)), params


def resolve(params: LabParams, kind: FaultKind, target: str, machines: Path) -> tuple[str, ...]:
    """The machines a fault on `target` acts on; InvalidInput when the target is unknown."""
    estate = lab_estate(params, machines)
    if target == EDGE_MACHINE and kind in (FaultKind.CUT, FaultKind.FREEZE):
        return (EDGE_MACHINE,)
    if any(s.name == target for s in estate.sites):
        if kind not in SITE_KINDS:
            raise InvalidInput(f"lab fault {kind}: names one host, not a site ({target})",
                               hint=f"sites take: {', '.join(sorted(SITE_KINDS))}")
        return tuple(h.name for h in estate.site(target).hosts)
    if any(h.name == target for h in estate.hosts):
        return (target,)
    known = ", ".join([s.name for s in estate.sites] + [estate.sites[0].hosts[0].name + " ..."])
    raise InvalidInput(f"lab fault {kind}: {target!r} is no host or site of this lab", hint=f"known: {known}")


def _shell(ml: MachineLab, machine: str, command: str) -> None:
    rc, out = RootShell(ml, machine, timeout=60)(command)
    if rc != 0:
        raise RemoteError(f"{machine}: {out.strip()[:300]}")


_FILL = (f"set -e; test ! -f /run/callfleet-disk-full; "
         f"used=$(du -sk {CALLSERVER_ROOT} | cut -f1); mkdir -p /run/callfleet-disk; "
         f"mount -t tmpfs -o size=$((used + 256))k,mode=0755 callfleet-disk-full /run/callfleet-disk; "
         f"cp -a {CALLSERVER_ROOT}/. /run/callfleet-disk/; mount --move /run/callfleet-disk {CALLSERVER_ROOT}; "
         f"dd if=/dev/zero of={CALLSERVER_ROOT}/.callfleet-fill bs=4k 2>/dev/null || true; "
         f"touch /run/callfleet-disk-full")
_UNFILL = (f"if test -f /run/callfleet-disk-full; then umount {CALLSERVER_ROOT}; "
           f"rm -f /run/callfleet-disk-full; fi")


def _apply(ml: MachineLab, kind: FaultKind, machine: str) -> None:
    if kind is FaultKind.CUT:
        machine_faults.link_down(ml, machine)
    elif kind is FaultKind.FREEZE:
        machine_faults.freeze(ml, machine)
    elif kind is FaultKind.POWEROFF:
        machine_faults.poweroff(ml, machine)
    elif kind is FaultKind.DISK_FULL:
        _shell(ml, machine, _FILL)
    elif kind is FaultKind.STOP_SERVICE:
        _shell(ml, machine, "systemctl stop kamailio")


def _undo(ml: MachineLab, kind: FaultKind, machine: str) -> None:
    if kind is FaultKind.CUT:
        machine_faults.link_up(ml, machine)
    elif kind is FaultKind.FREEZE:
        machine_faults.thaw(ml, machine)
    elif kind is FaultKind.POWEROFF:
        ml.start(machine)
    elif kind is FaultKind.DISK_FULL:
        _shell(ml, machine, _UNFILL)
    elif kind is FaultKind.STOP_SERVICE:
        _shell(ml, machine, "systemctl start kamailio")


def inject(*, state_dir: Path, kind: FaultKind, target: str) -> Fault:
    """Inject one fault and record it; InvalidInput (nothing changed) for an unknown target
    or a fault already in place on one of its machines."""
    state_dir = state_dir.resolve()
    _require_lab(state_dir)  # before the lock, which would create the directory
    with locked(state_dir):
        ml, params = _lab(state_dir)
        machines = resolve(params, kind, target, machines_dir(state_dir))
        current = active(state_dir)
        busy = sorted({m for f in current if f.kind == kind for m in f.machines} & set(machines))
        if busy:
            raise InvalidInput(f"lab fault {kind}: already in place on {', '.join(busy)}",
                               hint="`callfleet lab fault clear` first")
        fault = Fault(kind=kind, target=target, machines=machines)
        # Record first: a fault half-applied (one host of a site cut) is still undone by clear.
        _save(state_dir, [*current, fault])
        for machine in machines:
            _apply(ml, kind, machine)
        return fault


def clear(*, state_dir: Path) -> list[Fault]:
    """Undo every recorded fault, most recent first; returns what was undone."""
    state_dir = state_dir.resolve()
    _require_lab(state_dir)
    with locked(state_dir):
        ml, _ = _lab(state_dir)
        current = active(state_dir)
        undone = []
        for fault in reversed(current):
            for machine in fault.machines:
                _undo(ml, fault.kind, machine)
            undone.append(fault)
            _save(state_dir, [f for f in current if f not in undone])
        return undone
