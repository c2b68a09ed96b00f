"""Bring the lab up, report it, take it down: machines and the few host-side processes.

The lab is production-shaped (docs/LAB.md): every call server, the edge router and the
services (PSAP simulators, Prometheus) have their own systemd-nspawn machine, address and
network namespace on a bridge the lab creates. The stock release is installed on the call
servers with the same playbook an operator runs, over SSH as a non-root user with sudo.
The only processes on the orchestrator's computer are the PSAP simulators and Prometheus
(started inside the services machine's network namespace) and the background caller.

`lab up` is idempotent: machines and processes already running are left alone, stopped
or crashed ones are started again. `lab down` stops processes by pid, then every machine,
and removes the bridge, veths and addresses: nothing of the lab is left listening.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator import procs
from orchestrator.ansible import runner
from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.estate.inventory import write_inventory
from orchestrator.estate.model import Estate
from orchestrator.estate.ssh import ssh_trust
from orchestrator.fabricops.run import run_on_hosts
from orchestrator.lab import faults, prometheus
from orchestrator.lab.edge_machine import configure_edge, edge_configured
from orchestrator.lab.machines import MachineLab, net
from orchestrator.lab.machines.host import run
from orchestrator.lab.machines.models import MachineState
from orchestrator.lab.shell import RootShell
from orchestrator.lab.state import Component, LabParamsRecord, LabState, Status, locked, machines_dir
from orchestrator.lab.topology import (
    EDGE_MACHINE,
    SERVICES_MACHINE,
    STOCK_RELEASE,
    LabParams,
    caller_address,
    lab_estate,
    machine_names,
    psap_port,
    services_address,
)
from orchestrator.release.bundle import build_bundle, require_verified, sha256_of
from orchestrator.resources import playbooks_dir, stock_release_dir
from orchestrator.sipp import scenarios


def stock_release_source() -> Path:
    """The stock release source directory (releases/stock in the repository)."""
    return stock_release_dir()


def inventory_path(state_dir: Path) -> Path:
    """The inventory `lab up` writes and every other command reads by default."""
    return state_dir / "inventory.yml"


def _params(state: LabState) -> LabParams:
    p = state.params
    return LabParams(sites=p.sites, hosts_per_site=p.hosts_per_site, base=p.base,
                     background_failure=p.background_failure, background_delay_ms=p.background_delay_ms)


def _machines(params: LabParams, state_dir: Path) -> MachineLab:
    return MachineLab(bridge=params.bridge, network=params.network, state_dir=machines_dir(state_dir))


def _check_shape(state: LabState | None, params: LabParams, state_dir: Path) -> None:
    if state is None:
        return
    old = state.params
    if (old.sites, old.hosts_per_site, old.base) != (params.sites, params.hosts_per_site, params.base):
        ml = MachineLab.open(machines_dir(state_dir)) if (machines_dir(state_dir) / "machines.json").exists() \
            else None
        running = [m.name for m in ml.status() if m.state != MachineState.STOPPED] if ml else []
        running += [c.name for c in state.components.values() if c.status() == "running"]
        if running:
            raise InvalidInput(
                f"the lab is already up with {old.sites} sites x {old.hosts_per_site} hosts on "
                f"{old.base}; run `callfleet lab down` first to change its shape")


def _add_caller_address(params: LabParams) -> None:
    caller = caller_address(params)
    if not net.bridge_has(params.bridge, caller):
        run(["ip", "addr", "add", f"{caller}/32", "dev", params.bridge])


def lab_up(*, state_dir: Path, params: LabParams) -> Estate:
    """Boot every machine that is not running, install the stock release where none is,
    start the services and the edge, and write the inventory."""
    for binary, pkg in (("sipp", "sip-tester"), ("prometheus", "prometheus"), ("ssh", "openssh-client"),
                        ("ssh-keygen", "openssh-client"), ("nsenter", "util-linux")):
        procs.require_binary(binary, package=pkg)
    state_dir = state_dir.resolve()
    if not (machines_dir(state_dir) / "machines.json").exists():
        # every address of the /24 (the caller's .254 too) must be free: refuse before
        # anything of the lab exists, so a refusal leaves nothing to clean up
        net.refuse_conflicts(params.network, len(machine_names(params)), params.bridge)
    with locked(state_dir):
        old = LabState.load(state_dir)
        _check_shape(old, params, state_dir)
        state = LabState(params=LabParamsRecord(sites=params.sites, hosts_per_site=params.hosts_per_site,
                                                base=params.base, background_failure=params.background_failure,
                                                background_delay_ms=params.background_delay_ms),
                         components=dict(old.components) if old and old.params.base == params.base else {})
        if old is not None and (old.params.background_failure, old.params.background_delay_ms) != \
                (params.background_failure, params.background_delay_ms):
            _stop_psaps(state)  # started again below with the new noise
        state.save(state_dir)  # before anything starts: `lab down` must find what did
        ml = _machines(params, state_dir)
        ml.up(machine_names(params))
        _add_caller_address(params)
        estate = lab_estate(params, machines_dir(state_dir))

        svc = RootShell(ml, SERVICES_MACHINE)
        # Debian starts its own Kamailio on every machine; the services machine needs none.
        rc, out = svc("systemctl is-enabled -q kamailio && systemctl disable -q --now kamailio || true")
        if rc != 0:
            raise RemoteError(f"services machine: cannot stop Kamailio there: {out.strip()}")

        edge = RootShell(ml, EDGE_MACHINE)
        if not edge_configured(estate, edge):
            configure_edge(estate, edge)

        inventory = inventory_path(state_dir)
        write_inventory(estate, inventory, extra_vars=ansible_vars(),
                        header="# written by `callfleet lab up`; every command reads it by default\n")
        _install_stock(estate, inventory, state_dir)
        _start_services(estate, state, state_dir, ml, params)
        return observed(estate)


def ansible_vars() -> dict[str, object]:
    """The inventory variables a lab shares with production (inventory/production/)."""
    return {"callserver_service": "systemd", "ansible_become": True,
            "ansible_python_interpreter": "/usr/bin/python3"}


def _stock_bundle(bundle_dir: Path) -> Path:
    """The stock release bundle, rebuilt when the source in the repository changed since."""
    bundle = bundle_dir / f"callserver-{STOCK_RELEASE}"
    source = stock_release_source()
    if bundle.exists():
        manifest = require_verified(bundle)
        same = all((source / f.path).is_file() and sha256_of(source / f.path) == f.sha256 for f in manifest.files)
        if same and len(manifest.files) == sum(1 for p in source.rglob("*") if p.is_file()):
            return bundle
    return build_bundle(source=source, version=STOCK_RELEASE, out_dir=bundle_dir)


def _current_releases(estate: Estate) -> dict[str, str | None]:
    """host -> the release its `current` link names (None when it has none yet), over SSH."""
    report = run_on_hosts(estate=estate, hosts=estate.hosts, timeout=30,
                          command="readlink /opt/callserver/current || true")
    out: dict[str, str | None] = {}
    for r in report.results:
        if not r.ok:
            raise RemoteError(f"{r.host}: cannot read its current release: {r.error or r.stderr.strip()}")
        link = r.stdout.strip().rstrip("/")
        out[r.host] = link.rsplit("/", 1)[-1] if link else None
    return out


def observed(estate: Estate) -> Estate:
    """The estate with each host's release as its `current` link says (stock when none)."""
    releases = _current_releases(estate)
    sites = tuple(s.model_copy(update={"hosts": tuple(
        h.model_copy(update={"release": releases.get(h.name) or h.release}) for h in s.hosts)})
        for s in estate.sites)
    return estate.model_copy(update={"sites": sites})


def _install_stock(estate: Estate, inventory: Path, state_dir: Path) -> None:
    """The stock release on every call server that has no release yet, all at once, with the
    playbook an operator would use (install beside, check, switch, restart, verify)."""
    missing = sorted(h for h, rel in _current_releases(estate).items() if rel is None)
    if not missing:
        return
    bundle = _stock_bundle(state_dir / "bundles")
    result = runner.run(inventory=inventory, trust=ssh_trust(estate),
                        playbook=playbooks_dir() / "naive-rolling.yml", limit=",".join(missing),
                        extra_vars={"callserver_target_release": STOCK_RELEASE, "naive_serial": "100%",
                                    "callserver_bundle_dir": str(bundle)},
                        private_dir=state_dir / "ansible-stock", expect_hosts=frozenset(missing))
    if not result.succeeded:
        raise RemoteError(f"installing the stock release {STOCK_RELEASE} failed: {result}")


def services_netns(ml: MachineLab) -> list[str]:
    """argv prefix running a host program inside the services machine's network namespace
    (its address, its loopback): the program's files stay on this computer."""
    m = ml.machine(SERVICES_MACHINE)
    if m.init_pid is None:
        raise RemoteError("the services machine is not running")
    return ["nsenter", "-t", str(m.init_pid), "-n", "--"]


def _udp_bound_in(prefix: list[str], port: int) -> bool:
    proc = run([*prefix, "ss", "-Hlun", f"sport = :{port}"], check=False, timeout=10)
    return bool(proc.stdout.strip())


def _stop_psaps(state: LabState) -> None:
    for comp in state.components.values():
        if comp.kind == "psap":
            procs.stop_pid(comp.current_pid(), expect=comp.expect)


def _psap_scenario(state_dir: Path, params: LabParams) -> Path | None:
    """The PSAPs' scenario with the lab's background noise (None: the stock one)."""
    if not params.background_failure and not params.background_delay_ms:
        return None
    path = state_dir / "psap" / "psap_uas.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scenarios.noisy_psap_scenario(failure=params.background_failure,
                                                  delay_ms=params.background_delay_ms))
    return path


def _start_services(estate: Estate, state: LabState, state_dir: Path, ml: MachineLab, params: LabParams) -> None:
    prefix = services_netns(ml)
    address = str(services_address(params))
    scenario_file = _psap_scenario(state_dir, params)
    for index, number in enumerate(estate.numbers):
        name = f"psap-{number.number}"
        comp = state.components.get(name)
        if comp is not None and comp.status() == "running":
            continue
        port = psap_port(index)
        log = state_dir / "psap" / f"{name}.log"
        pid = scenarios.start_psap(address=address, port=port, workdir=state_dir / "psap" / number.number,
                                   log=log, wrap=prefix, bound=functools.partial(_udp_bound_in, prefix, port),
                                   scenario_file=scenario_file)
        state.components[name] = Component(name=name, kind="psap", address=f"{address}:{port}", pid=pid,
                                           expect="sipp", log=str(log))
        state.save(state_dir)
    comp = state.components.get("prometheus")
    if comp is None or comp.status() != "running":
        state.components["prometheus"] = prometheus.start(estate, state_dir, params, wrap=prefix)
        state.save(state_dir)


class ComponentStatus(BaseModel):
    """One line of `lab status`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    kind: str
    address: str
    status: Status
    pid: int | None
    site: str | None = None
    release: str | None = None
    service: str | None = None          # systemd's view of kamailio.service (machines)
    memory_mb: float | None = None      # the machine's memory cgroup (machines)


class LabStatus(BaseModel):
    """The whole of `lab status`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    state_dir: str
    inventory: str
    sites: int
    hosts_per_site: int
    components: tuple[ComponentStatus, ...]

    @property
    def healthy(self) -> bool:
        """True when every component runs."""
        return all(c.status == "running" and c.service in (None, "active")
                   for c in self.components if c.kind != "traffic")


_MACHINE_STATUS: dict[MachineState, Status] = {
    MachineState.RUNNING: "running", MachineState.FROZEN: "frozen", MachineState.STOPPED: "stopped",
    MachineState.CRASHED: "crashed"}


def _service_and_release(estate: Estate, live: list[str]) -> dict[str, tuple[str, str | None]]:
    """host -> (kamailio.service state, the release its Kamailio reports), one SSH round."""
    hosts = [estate.host(n) for n in live if n not in (SERVICES_MACHINE, EDGE_MACHINE)]
    out: dict[str, tuple[str, str | None]] = {}
    command = ("systemctl is-active kamailio; sudo -n kamcmd -s unix:/run/kamailio/kamailio_ctl "
               "cfg.get callfleet release 2>/dev/null || true")
    if hosts:
        for r in run_on_hosts(estate=estate, hosts=hosts, command=command, timeout=15).results:
            lines = r.stdout.strip().splitlines() if r.ok else []
            service = lines[0].strip() if lines else "unreachable"
            release = lines[1].strip() if len(lines) > 1 and not lines[1].lower().startswith("error") else None
            out[r.host] = (service, release)
    return out


def lab_status(*, state_dir: Path) -> LabStatus:
    """Each machine, its kamailio.service and the release Kamailio reports; each host process."""
    state_dir = state_dir.resolve()
    state = LabState.load(state_dir)
    if state is None:
        raise InvalidInput(f"{state_dir}: no lab here; run `callfleet lab up` first")
    params = _params(state)
    estate = lab_estate(params, machines_dir(state_dir))
    rows = []
    if (machines_dir(state_dir) / "machines.json").exists():
        ml = MachineLab.open(machines_dir(state_dir))
        machines = ml.status()
        live = [m.name for m in machines if m.state == MachineState.RUNNING]
        facts = _service_and_release(estate, live)
        for m in machines:
            kind = {EDGE_MACHINE: "edge", SERVICES_MACHINE: "services"}.get(m.name, "callserver")
            site = estate.host(m.name).site if kind == "callserver" else None
            service, release = facts.get(m.name, (None, None))
            rows.append(ComponentStatus(
                name=m.name, kind=kind, address=str(m.address), status=_MACHINE_STATUS[m.state],
                pid=m.init_pid, site=site, release=release, service=service,
                memory_mb=round(m.memory_bytes / 2**20, 1) if m.memory_bytes is not None else None))
    for comp in state.components.values():
        status = comp.status()
        rows.append(ComponentStatus(name=comp.name, kind=comp.kind, address=comp.address, status=status,
                                    pid=comp.current_pid() if status == "running" else None))
    return LabStatus(state_dir=str(state_dir), inventory=str(inventory_path(state_dir)),
                     sites=state.params.sites, hosts_per_site=state.params.hosts_per_site,
                     components=tuple(rows))


def lab_down(*, state_dir: Path) -> list[str]:
    """Stop host processes (callers first), then every machine; remove the bridge, veths and
    addresses. Returns the names of what was running."""
    state_dir = state_dir.resolve()
    with locked(state_dir):
        state = LabState.load(state_dir)
        stopped: list[str] = []
        if state is not None:
            order = {"traffic": 0, "prometheus": 1, "psap": 2}
            for comp in sorted(state.components.values(), key=lambda c: order.get(c.kind, 9)):
                was_running = comp.status() == "running"
                procs.stop_pid(comp.current_pid(), expect=comp.expect)
                comp.desired = "stopped"
                if was_running:
                    stopped.append(comp.name)
            state.save(state_dir)
        if (machines_dir(state_dir) / "machines.json").exists():
            ml = MachineLab.open(machines_dir(state_dir))
            stopped += [m.name for m in ml.status() if m.state in (MachineState.RUNNING, MachineState.FROZEN)]
            faults.forget(state_dir)  # the machines and their links go: nothing left to undo
            ml.down()
        return stopped


def site_up(*, state_dir: Path, site: str) -> None:
    """Start the call-server machines of one site of a lab already up (Pulumi's lab substrate)."""
    state_dir = state_dir.resolve()
    state = LabState.load(state_dir)
    if state is None:
        raise InvalidInput(f"{state_dir}: no lab here; run `callfleet lab up` first")
    estate = lab_estate(_params(state), machines_dir(state_dir))
    ml = MachineLab.open(machines_dir(state_dir))
    for host in estate.site(site).hosts:
        ml.start(host.name)


def site_down(*, state_dir: Path, site: str) -> None:
    """Power the call-server machines of one lab site off (their disks are kept)."""
    state_dir = state_dir.resolve()
    state = LabState.load(state_dir)
    if state is None or not (machines_dir(state_dir) / "machines.json").exists():
        return
    ml = MachineLab.open(machines_dir(state_dir))
    for host in lab_estate(_params(state), machines_dir(state_dir)).site(site).hosts:
        ml.stop(host.name)
