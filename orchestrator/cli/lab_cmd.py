"""`callfleet lab up|status|down|traffic`: the lab estate on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import DEFAULT_LAB_DIR, JsonOpt, console, emit_json, handle_errors
from orchestrator.lab import control, traffic
from orchestrator.lab.topology import LabParams

app = typer.Typer(
    help="The lab: six sites of real Kamailio call servers on loopback, PSAP simulators, an edge "
         "router, a private sshd and a background caller. Rehearse here before production.",
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
    base: Annotated[str, typer.Option(help="Loopback prefix 127.X for every lab address.")] = "127.77",
    state_dir: StateDirOpt = DEFAULT_LAB_DIR,
    json_out: JsonOpt = False,
) -> None:
    """Bring the lab up (harmless when it already runs) and write its inventory."""
    params = LabParams(sites=sites, hosts_per_site=hosts_per_site, base=base)
    with console.status("bringing the lab up...", spinner="dots") if not json_out else _Null():
        estate = control.lab_up(state_dir=state_dir, params=params)
    inventory = control.inventory_path(state_dir.resolve())
    if json_out:
        emit_json({"inventory": str(inventory), "sites": len(estate.sites), "hosts": len(estate.hosts)})
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
    """Each component as running, stopped or crashed; the release each call server runs.

    Exit code 4 when a component that should run does not."""
    st = control.lab_status(state_dir=state_dir)
    if json_out:
        emit_json(st)
    else:
        table = Table(title=f"lab {st.state_dir} ({st.sites} sites x {st.hosts_per_site} hosts)")
        for col in ("component", "kind", "site", "address", "status", "pid", "release"):
            table.add_column(col)
        colour = {"running": "green", "stopped": "yellow", "crashed": "bold red"}
        for c in st.components:
            table.add_row(c.name, c.kind, c.site or "", c.address, f"[{colour[c.status]}]{c.status}[/]",
                          str(c.pid or ""), c.release or "")
        console.print(table)
        console.print(f"inventory: {st.inventory}")
    if not st.healthy:
        raise typer.Exit(4)


@app.command()
@handle_errors
def down(state_dir: StateDirOpt = DEFAULT_LAB_DIR, json_out: JsonOpt = False) -> None:
    """Stop every process the lab started, by pid; leaves no listener behind."""
    stopped = control.lab_down(state_dir=state_dir)
    if json_out:
        emit_json({"stopped": stopped})
    else:
        console.print(f"lab down: stopped {len(stopped)} processes")


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
        emit_json(info)
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


@app.command()
@handle_errors
def demo(state_dir: StateDirOpt = DEFAULT_LAB_DIR) -> None:
    """The main job: bring the lab up, roll a good release out canary-first across the six
    sites, then a faulty one (reconnection-triggered bug) that must stop at the canary, with
    the calls the public lost printed for each. Exit 0 when both went as they must."""
    from orchestrator.lab.demo import run_demo

    raise typer.Exit(run_demo(state_dir=state_dir, console=console))
