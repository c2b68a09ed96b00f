"""MachineLab: boot, inspect, stop and tear down a lab's nspawn machines.

One lab = one state dir, one bridge, one network. The record (machines.json) is
saved before anything is created and after every change, so `down` from another
process (or after a crash of `up`) finds every bridge, machine and directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network
from pathlib import Path

from orchestrator import procs
from orchestrator.lab.machines import access, cgroups, net
from orchestrator.lab.machines.errors import LabShapeChanged, MachineBootFailed, MachineStopFailed, NamingError
from orchestrator.lab.machines.host import ensure_inotify_instances, require_host_tools, run, which
from orchestrator.lab.machines.image import USER, ensure_image
from orchestrator.lab.machines.models import (
    HOSTNAME_RE,
    Desired,
    LabRecord,
    MachineRecord,
    MachineState,
    MachineStatus,
)
from orchestrator.lab.machines.overlay import prepare_upper

READY_STATES = ("running", "degraded")


def nspawn_argv(rec: MachineRecord, rootfs: Path, bridge: str) -> list[str]:
    """The systemd-nspawn command line of one machine.

    --register=no --keep-unit: there is no host systemd/machined to register with.
    --overlay BASE:UPPER:/ on -D BASE: the base stays read-only and shared; writes
    land in UPPER. --link-journal=no, --resolv-conf=off, --timezone=off: nspawn
    touches nothing on the host and nothing in the machine it does not need to."""
    nspawn = which("systemd-nspawn") or "systemd-nspawn"
    return [
        nspawn, "--register=no", "--keep-unit", "--quiet",
        "-D", str(rootfs), f"--overlay={rootfs}:{rec.upper}:/",
        f"--machine={rec.machine}", f"--hostname={rec.name}", "--boot",
        f"--network-bridge={bridge}", "--console=read-only",
        "--link-journal=no", "--resolv-conf=off", "--timezone=off",
    ]


@contextlib.contextmanager
def _record_lock(state_dir: Path) -> Iterator[None]:
    """Exclusive use of machines.json (flock on its own open file: works across threads too)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "machines.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _expect(rec: MachineRecord) -> str:
    # Guards against recycled pids: our nspawn's command line names its machine.
    return f"--machine={rec.machine} "


def find_init_pid(nspawn_pid: int) -> int | None:
    """The machine's PID 1 as seen from the host: nspawn's child whose innermost pid is 1."""
    try:
        children = " ".join(p.read_text() for p in Path(f"/proc/{nspawn_pid}/task").glob("*/children")).split()
    except OSError:
        return None
    for child in children:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                if len(ids) >= 2 and ids[-1] == "1":
                    return int(child)
    return None


def is_machine_init(pid: int | None) -> bool:
    """True when `pid` lives and is PID 1 of its own pid namespace (a machine's systemd)."""
    if not procs.alive(pid):
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    ids = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
    return len(ids) >= 2 and ids[-1] == "1"


def _groups(m: MachineRecord) -> cgroups.MachineCgroups:
    # Recorded paths first: a machine started by another process lives under that process's groups.
    return cgroups.MachineCgroups(paths=m.cgroups) if m.cgroups else cgroups.machine_cgroups(m.machine)


def _tcp_open(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
        return True
    return False


class MachineLab:
    """A lab of systemd-nspawn machines on one bridge; see the module doc."""

    def __init__(self, *, bridge: str, network: IPv4Network | str, state_dir: Path,
                 image_cache: Path | None = None, user: str = USER,
                 boot_timeout: float = 120.0, stop_timeout: float = 20.0) -> None:
        self.bridge = net.check_bridge_name(bridge)
        self.network = net.lab_network(network)
        self.state_dir = state_dir
        self.image_cache = image_cache
        self.user = user
        self.boot_timeout = boot_timeout
        self.stop_timeout = stop_timeout

    @classmethod
    def open(cls, state_dir: Path, *, boot_timeout: float = 120.0, stop_timeout: float = 20.0) -> MachineLab:
        """The lab recorded in `state_dir` (for status/stop/down from another process)."""
        rec = LabRecord.load(state_dir)
        if rec is None:
            raise LabShapeChanged(f"no machine lab recorded in {state_dir}")
        return cls(bridge=rec.bridge, network=rec.network, state_dir=state_dir, user=rec.user,
                   boot_timeout=boot_timeout, stop_timeout=stop_timeout)

    # ---- record -------------------------------------------------------------------------
    def record(self) -> LabRecord | None:
        """The current record (re-read each time: another process may have changed it)."""
        return LabRecord.load(self.state_dir)

    def _require_record(self) -> LabRecord:
        rec = self.record()
        if rec is None:
            raise LabShapeChanged(f"no machine lab recorded in {self.state_dir}")
        return rec

    def machine(self, name: str) -> MachineRecord:
        """One machine's record, or NamingError."""
        rec = self._require_record()
        if name not in rec.machines:
            raise NamingError(f"no machine {name!r} in the lab at {self.state_dir}")
        return rec.machines[name]

    def cgroups(self, name: str) -> cgroups.MachineCgroups:
        """The machine's cgroups (freezer, memory, ...)."""
        return _groups(self.machine(name))

    def _update(self, machine: MachineRecord) -> None:
        # Read-modify-write under a lock: Pulumi's provider starts and stops the machines of
        # several sites at once, from threads of one process; unlocked, one would undo another.
        with _record_lock(self.state_dir):
            self._require_record().with_machine(machine).save(self.state_dir)

    # ---- up -----------------------------------------------------------------------------
    def _plan(self, names: Sequence[str], existing: LabRecord | None) -> None:
        if len(set(names)) != len(names):
            raise NamingError(f"duplicate machine names in {list(names)}")
        for i, name in enumerate(names):
            if not HOSTNAME_RE.match(name):
                raise NamingError(f"machine name {name!r} is not a lower-case hostname label")
            net.machine_name(self.bridge, i)   # fits 15 with vb- or raises
            net.machine_address(self.network, i)  # fits the network or raises
        if existing is None:
            if net.link_exists(self.bridge):
                raise NamingError(f"bridge {self.bridge} exists but is not recorded in {self.state_dir}",
                                  hint="another lab uses that bridge name: pick another")
            return
        if existing.bridge != self.bridge or existing.network != self.network:
            raise LabShapeChanged(f"{self.state_dir} holds a lab on {existing.bridge} {existing.network}",
                                  hint="down it first, or use another state dir")
        by_index = {m.index: name for name, m in existing.machines.items()}
        for i, name in enumerate(names):
            # An index is an address and a veth: it must keep meaning the same machine.
            if by_index.get(i, name) != name or (name in existing.machines and existing.machines[name].index != i):
                raise LabShapeChanged(f"machine #{i} is {by_index.get(i)!r} in {self.state_dir}, not {name!r}",
                                      hint="list machines in their original order (new ones last), or down first")

    def up(self, names: Sequence[str]) -> list[MachineRecord]:
        """Boot the named machines (in parallel) and wait until each is ready; returns their records.

        Harmless twice: machines already running are left alone. Refuses (AddressInUse)
        before creating anything when a lab address is in use elsewhere on this computer."""
        require_host_tools()
        existing = self.record()
        self._plan(names, existing)
        net.refuse_conflicts(self.network, len(names), self.bridge)
        ensure_inotify_instances(len(names))
        image = ensure_image(self.image_cache)
        if existing is None:
            existing = LabRecord(bridge=self.bridge, network=self.network,
                                 host_address=net.host_address(self.network).ip,
                                 rootfs=image.rootfs, user=self.user, bridge_created=True)
            existing.save(self.state_dir)  # before the bridge exists: a crash here still gets cleaned up
        net.create_bridge(self.bridge, self.network)

        authorized = access.ensure_client_key(self.state_dir)
        lab = existing
        for i, name in enumerate(names):
            if name not in lab.machines:
                lab = lab.with_machine(self._new_machine(lab, i, name, authorized))
        lab.save(self.state_dir)
        access.write_known_hosts(self.state_dir, lab.machines.values())
        access.write_ssh_config(self.state_dir, lab.machines.values(), self.user)

        to_start = [lab.machines[n] for n in names if self._state(lab.machines[n]) not in
                    (MachineState.RUNNING, MachineState.FROZEN)]
        started = [self._spawn(lab, m, authorized) for m in to_start]
        for m in started:
            self._update(m)
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(started)))) as pool:
            futures = [pool.submit(self._wait_ready, m) for m in started]
        failed = []
        for m, fut in zip(started, futures, strict=True):  # record every machine that did get ready
            try:
                self._update(fut.result())
            except MachineBootFailed:
                failed.append(m)
        # A machine that missed its boot deadline on a loaded computer gets one more boot (its
        # disk kept); a second failure is reported with its console.
        for m in failed:
            self._boot_again(m.name, authorized)
        final = self._require_record()
        return [final.machines[n] for n in names]

    def _new_machine(self, lab: LabRecord, index: int, name: str, authorized: str) -> MachineRecord:
        mdir = self.state_dir / "machines" / name
        address = net.machine_address(self.network, index)
        ident = prepare_upper(base=lab.rootfs, upper=mdir / "upper", hostname=name, address=address,
                              user=self.user, authorized_key=authorized,
                              keys_dir=access.ssh_dir(self.state_dir) / "hostkeys")
        machine = net.machine_name(self.bridge, index)
        return MachineRecord(name=name, machine=machine, index=index, address=address.ip,
                             veth=net.veth_name(machine), upper=mdir / "upper", log=mdir / "console.log",
                             host_key_pub=ident.host_key_pub, machine_id=ident.machine_id)

    def _spawn(self, lab: LabRecord, m: MachineRecord, authorized: str) -> MachineRecord:
        # Re-assert identity/config (kept when present) so a restart after keep_overlays works too.
        prepare_upper(base=lab.rootfs, upper=m.upper, hostname=m.name,
                      address=net.machine_address(self.network, m.index), user=self.user,
                      authorized_key=authorized, keys_dir=access.ssh_dir(self.state_dir) / "hostkeys")
        groups = cgroups.machine_cgroups(m.machine)  # under *this* process's groups
        if m.cgroups and m.cgroups != groups.paths:
            cgroups.remove(_groups(m))  # the previous start's (empty) groups, made by another process
        cgroups.create(groups)
        cgroups.thaw(groups)
        net.delete_veth(m.veth)  # a veth left by a killed nspawn would make the new one fail
        # The launcher joins the machine's cgroups, then execs nspawn: every process of the
        # machine is born inside them (writing the pid after Popen would race nspawn's forks).
        launcher = ['/bin/sh', '-c', 'for f in $CALLFLEET_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; '
                    'exec "$@"', "callfleet-machine", *nspawn_argv(m, lab.rootfs, self.bridge)]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8",
               "CALLFLEET_CGROUP_PROCS": " ".join(str(p) for p in groups.procs_files)}
        pid = procs.spawn(launcher, log=m.log, env=env)
        return m.model_copy(update={"nspawn_pid": pid, "init_pid": None, "desired": Desired.RUNNING,
                                    "cgroups": dict(groups.paths),
                                    "started_at": time.time(), "ready_seconds": None})

    def _wait_ready(self, m: MachineRecord) -> MachineRecord:
        """Bounded wait: init found, veth present, sshd answering, systemd running or degraded."""
        assert m.nspawn_pid is not None and m.started_at is not None
        started_at = m.started_at
        deadline = time.monotonic() + self.boot_timeout

        def fail(why: str) -> MachineBootFailed:
            return MachineBootFailed(f"machine {m.name} ({m.machine}, {m.address}): {why}",
                                     hint=f"console log {m.log}:\n{procs.tail(m.log, 15)}")

        init_pid = None
        while init_pid is None:
            if not procs.alive(m.nspawn_pid):
                raise fail("systemd-nspawn exited during boot")
            init_pid = find_init_pid(m.nspawn_pid)
            if init_pid is None:
                if time.monotonic() > deadline:
                    raise fail("no init process appeared")
                time.sleep(0.05)
        m = m.model_copy(update={"init_pid": init_pid})
        if not procs.wait_for(lambda: net.link_exists(m.veth), timeout=max(0.0, deadline - time.monotonic())):
            raise fail(f"host-side veth {m.veth} did not appear")
        net.after_attach(m.veth)
        if not procs.wait_for(lambda: _tcp_open(str(m.address), 22) or not procs.alive(m.nspawn_pid),
                              timeout=max(0.0, deadline - time.monotonic()), interval=0.2) \
                or not procs.alive(m.nspawn_pid):
            raise fail("sshd did not answer on port 22")
        state = ""
        while time.monotonic() < deadline:
            left = max(1, int(deadline - time.monotonic()))
            try:
                out = self.ssh(m.name, f"timeout {left} systemctl is-system-running --wait", timeout=left + 10)
                state = out.stdout.strip()
            except subprocess.TimeoutExpired:
                state = "timeout"
            if state in READY_STATES:
                return m.model_copy(update={"ready_seconds": round(time.time() - started_at, 2)})
            time.sleep(0.5)
        raise fail(f"systemd did not finish booting (is-system-running: {state or 'no answer'})")

    # ---- inspect ------------------------------------------------------------------------
    def _state(self, m: MachineRecord) -> MachineState:
        running = procs.alive(m.nspawn_pid, expect=_expect(m)) or is_machine_init(m.init_pid)
        if running:
            return MachineState.FROZEN if cgroups.is_frozen(_groups(m)) \
                else MachineState.RUNNING
        return MachineState.CRASHED if m.desired == Desired.RUNNING else MachineState.STOPPED

    def status(self) -> list[MachineStatus]:
        """Every recorded machine's state, pids and memory, in plan order."""
        rec = self.record()
        if rec is None:
            return []
        out = []
        for m in sorted(rec.machines.values(), key=lambda m: m.index):
            state = self._state(m)
            live = state in (MachineState.RUNNING, MachineState.FROZEN)
            out.append(MachineStatus(
                name=m.name, machine=m.machine, address=m.address, state=state,
                nspawn_pid=m.nspawn_pid if live else None, init_pid=m.init_pid if live else None,
                memory_bytes=cgroups.memory_bytes(_groups(m)) if live else None))
        return out

    def ssh(self, name: str, command: str, *, timeout: float = 30,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `command` on machine `name` as the lab user (strict host key checking)."""
        return run(access.ssh_argv(self.state_dir, name, command), timeout=timeout, check=check)

    def nsenter_argv(self, name: str, *command: str) -> list[str]:
        """argv running `command` inside the machine's namespaces as root, without ssh."""
        m = self.machine(name)
        if self._state(m) != MachineState.RUNNING or m.init_pid is None:
            raise MachineBootFailed(f"machine {name} is not running")
        return ["nsenter", "-t", str(m.init_pid), "-m", "-u", "-i", "-n", "-p", *command]

    # ---- stop / start / down ------------------------------------------------------------
    def start(self, name: str) -> MachineRecord:
        """Start a stopped machine again on its kept upper dir (its changes survive); waits for readiness."""
        lab = self._require_record()
        m = self.machine(name)
        if self._state(m) in (MachineState.RUNNING, MachineState.FROZEN):
            return m
        authorized = access.ensure_client_key(self.state_dir)
        m = self._spawn(lab, m, authorized)
        self._update(m)
        try:
            m = self._wait_ready(m)
        except MachineBootFailed:
            return self._boot_again(name, authorized)
        self._update(m)
        return m

    def _boot_again(self, name: str, authorized: str) -> MachineRecord:
        """One more boot (disk kept) for a machine that missed its boot deadline on a loaded
        computer; a second failure is raised with its console."""
        self._terminate([self.machine(name)], self.stop_timeout)
        again = self._spawn(self._require_record(), self.machine(name), authorized)
        self._update(again)
        ready = self._wait_ready(again)
        self._update(ready)
        return ready

    def stop(self, name: str, timeout: float | None = None) -> None:
        """Power a machine off: SIGTERM to nspawn (a clean poweroff), then SIGKILL after `timeout`."""
        m = self.machine(name).model_copy(update={"desired": Desired.STOPPED})
        self._update(m)
        self._terminate([m], self.stop_timeout if timeout is None else timeout)

    def _terminate(self, machines: Sequence[MachineRecord], timeout: float) -> None:
        """Stop several machines at once: all get SIGTERM first, so their shutdowns overlap."""
        for m in machines:
            groups = _groups(m)
            cgroups.thaw(groups)  # a frozen machine cannot act on SIGTERM
            if m.nspawn_pid is not None and procs.alive(m.nspawn_pid, expect=_expect(m)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.nspawn_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for m in machines:
            groups = _groups(m)

            def gone(m: MachineRecord = m, groups: cgroups.MachineCgroups = groups) -> bool:
                return not procs.alive(m.nspawn_pid, expect=_expect(m)) and not any(
                    procs.alive(p) for p in cgroups.pids(groups))

            if not procs.wait_for(gone, timeout=max(0.0, deadline - time.monotonic()), interval=0.05):
                # SIGKILL the machine's PID 1 first: that kills its whole pid namespace,
                # then whatever is left in its cgroups (nspawn itself included).
                if m.init_pid is not None and is_machine_init(m.init_pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(m.init_pid, signal.SIGKILL)
                cgroups.kill_all(groups)
                if not procs.wait_for(gone, timeout=5.0, interval=0.05):
                    raise MachineStopFailed(f"machine {m.name}: processes {sorted(cgroups.pids(groups))} survive")
            net.delete_veth(m.veth)
            cgroups.remove(groups)
            with contextlib.suppress(LabShapeChanged, NamingError):
                self._update(self.machine(m.name).model_copy(update={"nspawn_pid": None, "init_pid": None}))

    def down(self, *, keep_overlays: bool = False, timeout: float | None = None) -> None:
        """Stop every machine, then remove veths, the bridge, cgroups and the lab's runtime dirs.

        keep_overlays=True keeps each machine's upper dir (and the record, so a later `up`
        boots the same machines with their changes); otherwise the state dir's lab files go."""
        rec = self.record()
        if rec is None:
            return  # nothing recorded here: nothing of ours to remove (never guess by name)
        machines = [m.model_copy(update={"desired": Desired.STOPPED}) for m in rec.machines.values()]
        for m in machines:
            self._update(m)
        self._terminate(machines, self.stop_timeout if timeout is None else timeout)
        for veth in net.bridge_ports(rec.bridge):
            net.delete_veth(veth)
        if rec.bridge_created:
            net.delete_bridge(rec.bridge)
        if keep_overlays:
            return
        shutil.rmtree(self.state_dir / "machines", ignore_errors=True)
        shutil.rmtree(access.ssh_dir(self.state_dir), ignore_errors=True)
        LabRecord.path(self.state_dir).unlink(missing_ok=True)
        (self.state_dir / "machines.lock").unlink(missing_ok=True)
