"""Fault helpers for lab machines: small, bounded and undoable.

| fault            | undo            | how                                                   |
|------------------|-----------------|-------------------------------------------------------|
| link_down        | link_up         | host-side veth down: the cable is cut, addresses stay |
| freeze           | thaw            | cgroup freezer: every process stops, sockets stay     |
| poweroff         | MachineLab.start| SIGRTMIN+4 to the machine's systemd (clean poweroff), |
|                  |                 | or hard=True: SIGKILL its PID 1 (power cut)           |

A powered-off machine keeps desired=running, so status() reports it CRASHED until
it is started again: that is what a monitoring system would see.
"""

from __future__ import annotations

import contextlib
import os
import signal

from orchestrator import procs
from orchestrator.lab.machines import cgroups, net
from orchestrator.lab.machines.errors import MachineStopFailed
from orchestrator.lab.machines.manager import MachineLab, is_machine_init


def link_down(lab: MachineLab, name: str) -> None:
    """Cut the machine's link (host-side veth down); undo with link_up."""
    net.set_link(lab.machine(name).veth, up=False)


def link_up(lab: MachineLab, name: str) -> None:
    """Restore the machine's link."""
    net.set_link(lab.machine(name).veth, up=True)


def freeze(lab: MachineLab, name: str, timeout: float = 5.0) -> None:
    """Stop every process of the machine (cgroup freezer, SIGSTOP as fallback); undo with thaw."""
    groups = lab.cgroups(name)
    if cgroups.freeze(groups):
        if not procs.wait_for(lambda: cgroups.is_frozen(groups) and
                              (groups.paths["freezer"] / "freezer.state").read_text().strip() == "FROZEN",
                              timeout=timeout, interval=0.02):
            cgroups.thaw(groups)
            raise MachineStopFailed(f"machine {name} did not freeze within {timeout} s (thawed again)")
        return
    for pid in cgroups.pids(groups):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)


def thaw(lab: MachineLab, name: str) -> None:
    """Undo freeze."""
    groups = lab.cgroups(name)
    if not cgroups.thaw(groups):
        for pid in cgroups.pids(groups):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def poweroff(lab: MachineLab, name: str, *, hard: bool = False, timeout: float = 20.0) -> None:
    """Power the machine off behind the lab's back; bounded. Undo with lab.start(name)."""
    m = lab.machine(name)
    groups = lab.cgroups(name)
    cgroups.thaw(groups)
    if m.init_pid is not None and is_machine_init(m.init_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(m.init_pid, signal.SIGKILL if hard else signal.SIGRTMIN + 4)
    if not procs.wait_for(lambda: not procs.alive(m.nspawn_pid), timeout=timeout, interval=0.05):
        raise MachineStopFailed(f"machine {name} did not power off within {timeout} s")
