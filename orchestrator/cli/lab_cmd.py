"""`callfleet lab up|status|down|traffic|fault|demo`: the production-shaped lab estate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import DEFAULT_LAB_DIR, JsonOpt, console, emit_json, handle_errors
from orchestrator.cli.documents import FaultList, FaultsCleared, LabDown, LabUp, TrafficStarted
from orchestrator.lab import control, faults, traffic
from orchestrator.lab.faults import FaultKind
from orchestrator.lab.topology import LabParams

app = typer.Typer(
    help="The lab: a small copy of production on this computer. Every call server, the edge router "
         "and the services (PSAP simulators, Prometheus) are systemd-nspawn machines with their own "
         "systemd, sshd, filesystem and address in 198.18.0.0/15, reached over SSH as a non-root user "
         "with sudo; a background caller stands in for the public. Needs root. Rehearse here before "
         "production: the lab and production differ by inventory only.",
    no_args_is_help=True)
traffic_app = typer.Typer(help="The background caller: SIPp calling the emergency numbers through "
                               "the edge, standing in for the public.", no_args_is_help=True)
app.add_typer(traffic_app, name="traffic")

StateDirOpt = Annotated[Path, typer.Option("--state-dir", help="Where the lab keeps its files "
                                           "($CALLFLEET_LAB_DIR).")]


@app.command()
@handle_errors
def up(
    sites: Annotated[int, typer.Option(help="Number of sites (1-12).")] = 6,
    hosts_per_site: Annotated[int, typer.Option(help="Call servers per site (1-8).")] = 2,
    base: Annotated[str, typer.Option(help="The lab's /24 in the RFC 2544 block: 198.18.X or 198.19.X "
                                            "(bridge cf18nX; see docs/LAB.md).")] = "198.18.77",
    background_failure: Annotated[float, typer.Option(
        help="Background noise: the fraction of calls (0-0.2) the PSAPs reject with 503 at random, on "
             "every site alike, as a real network fails a few calls in a thousand.")] = 0.0,
    background_delay_ms: Annotated[int, typer.Option(
        help="Background noise: a random answer delay of 0 to this many ms (0-500) at the PSAPs.")] = 0,
    state_dir: StateDirOpt = DEFAULT_LAB_DIR,
    json_out: JsonOpt = False,
) -> None:
    """Bring the lab up (harmless when it already runs) and write its inventory.

    Boots one machine per call server plus the edge and the services machine (the Debian
    image is built once, about 2 minutes, and cached in /var/tmp/callfleet-images), installs
    the stock release with the operator's playbook, starts the PSAPs and Prometheus."""
    params = LabParams(sites=sites, hosts_per_site=hosts_per_site, base=base,
                       background_failure=background_failure, background_delay_ms=background_delay_ms)
    with console.status("bringing the lab up...", spinner="dots") if not json_out else _Null():
        estate = control.lab_up(state_dir=state_dir, params=params)
    inventory = control.inventory_path(state_dir.resolve())
    if json_out:
        emit_json(LabUp(inventory=str(inventory), sites=len(estate.sites), hosts=len(estate.hosts)))
    else:
        console.print(f"lab up: {len(estate.sites)} sites x {params.hosts_per_site} call servers, "
                      f"edge {estate.edge.address if estate.edge else '-'}; inventory {inventory}")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@app.command()
@handle_errors
def status(state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Each machine and process as running, stopped, frozen or crashed; kamailio.service's
    state and the release each call server's Kamailio reports; each machine's memory.

    Exit code 4 when a component that should run does not."""
    st = control.lab_status(state_dir=state_dir)
    if json_out:
        emit_json(st)
    else:
        table = Table(title=f"lab {st.state_dir} ({st.sites} sites x {st.hosts_per_site} hosts)")
        for col in ("component", "kind", "site", "address", "status", "service", "release", "memory"):
            table.add_column(col)
        colour = {"running": "green", "stopped": "yellow", "crashed": "bold red", "frozen": "cyan"}
        for c in st.components:
            table.add_row(c.name, c.kind, c.site or "", c.address, f"[{colour[c.status]}]{c.status}[/]",
                          c.service or "", c.release or "",
                          f"{c.memory_mb:.0f} MiB" if c.memory_mb is not None else "")
        console.print(table)
        console.print(f"inventory: {st.inventory}")
    if not st.healthy:
        raise typer.Exit(4)


@app.command()
@handle_errors
def down(state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Stop every process and machine of the lab; remove its bridge, veths and addresses.
    Leaves nothing listening."""
    stopped = control.lab_down(state_dir=state_dir)
    if json_out:
        emit_json(LabDown(stopped=list(stopped)))
    else:
        console.print(f"lab down: stopped {len(stopped)} machines and processes")


@traffic_app.command("start")
@handle_errors
def traffic_start(
    rate: Annotated[float, typer.Option(help="Calls per second through the edge.")] = 20.0,
    duration: Annotated[int, typer.Option(help="Stop by itself after this many seconds.")] = 3600,
    state_dir: StateDirOpt = DEFAULT_LAB_DIR,
    json_out: JsonOpt = False,
) -> None:
    """Start the background caller (bounded: it stops by itself after --duration)."""
    info = traffic.start(state_dir=state_dir, rate=rate, duration_s=duration)
    if json_out:
        emit_json(TrafficStarted.model_validate(info))
    else:
        console.print(f"background caller started: {rate:g} calls/s for at most {duration}s "
                      f"(pid {info['pid']})")


@traffic_app.command("stop")
@handle_errors
def traffic_stop(state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Stop the background caller, letting calls in progress finish; print the final report."""
    report = traffic.stop(state_dir=state_dir)
    _print_report(report, json_out)


@traffic_app.command("report")
@handle_errors
def traffic_report(state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Calls attempted, answered and failed (by SIP code or timeout) since start."""
    _print_report(traffic.report(state_dir=state_dir), json_out)


def _print_report(report: traffic.TrafficReport, json_out: bool) -> None:
    if json_out:
        emit_json(report)
        return
    causes = ", ".join(f"{k}: {v}" for k, v in sorted(report.failures.items())) or "none"
    console.print(f"background caller ({report.state}, {report.rate:g} calls/s, {report.elapsed_s:.0f}s): "
                  f"attempted {report.attempted}, answered {report.answered}, failed {report.failed} "
                  f"({causes}), in flight {report.in_flight}")


fault_app = typer.Typer(help="Faults to inject into the lab's machines, for reliability rehearsals. "
                             "Each is recorded and undone by `lab fault clear` (and by `lab down`). "
                             "A target that is no host or site of the lab is refused (exit 2).",
                        no_args_is_help=True)
app.add_typer(fault_app, name="fault")
TargetArg = Annotated[str, typer.Argument(help="A call-server host (site1-cs1) or, where stated, a site (site1).")]


def _inject(kind: FaultKind, target: str, state_dir: Path, json_out: bool) -> None:
    fault = faults.inject(state_dir=state_dir, kind=kind, target=target)
    if json_out:
        emit_json(fault)
    else:
        console.print(f"fault {fault.kind} on {', '.join(fault.machines)}; undo with `callfleet lab fault clear`")


@fault_app.command("cut")
@handle_errors
def fault_cut(target: TargetArg, state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Cut the network link of a host, of every host of a site, or of the edge."""
    _inject(FaultKind.CUT, target, state_dir, json_out)


@fault_app.command("freeze")
@handle_errors
def fault_freeze(target: TargetArg, state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Freeze every process of a host (cgroup freezer): alive, answering nothing."""
    _inject(FaultKind.FREEZE, target, state_dir, json_out)


@fault_app.command("poweroff")
@handle_errors
def fault_poweroff(target: TargetArg, state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Power a host off behind the orchestrator's back (clear boots it again, disk kept)."""
    _inject(FaultKind.POWEROFF, target, state_dir, json_out)


@fault_app.command("disk-full")
@handle_errors
def fault_disk_full(target: TargetArg, state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Fill the call-server disk (/opt/callserver) of a host."""
    _inject(FaultKind.DISK_FULL, target, state_dir, json_out)


@fault_app.command("stop-service")
@handle_errors
def fault_stop_service(target: TargetArg, state_dir: StateDirOpt = DEFAULT_LAB_DIR,
                       json_out: JsonOpt = False) -> None:
    """Stop kamailio.service on a host or on every host of a site."""
    _inject(FaultKind.STOP_SERVICE, target, state_dir, json_out)


@fault_app.command("list")
@handle_errors
def fault_list(state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """The faults in place."""
    current = faults.listing(state_dir)
    if json_out:
        emit_json(FaultList(faults=current))
    else:
        for f in current:
            console.print(f"{f.kind} {f.target} ({', '.join(f.machines)})")
        if not current:
            console.print("no fault in place")


@fault_app.command("clear")
@handle_errors
def fault_clear(state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Undo every fault in place, most recent first."""
    undone = faults.clear(state_dir=state_dir)
    if json_out:
        emit_json(FaultsCleared(cleared=undone))
    else:
        console.print(f"cleared {len(undone)} faults")


@app.command()
@handle_errors
def demo(state_dir: StateDirOpt = DEFAULT_LAB_DIR) -> None:
    """The main job: bring the lab up, roll a good release out canary-first across the six
    sites, then a faulty one (reconnection-triggered bug) that must stop at the canary, with
    the calls the public lost printed for each. Exit 0 when both went as they must."""
    from orchestrator.lab.demo import run_demo

    raise typer.Exit(run_demo(state_dir=state_dir, console=console))
