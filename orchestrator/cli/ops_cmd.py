"""`callfleet exec` and `callfleet diag`: ad-hoc commands and diagnostics over SSH (Fabric)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import InventoryOpt, JsonOpt, console, emit_json, handle_errors
from orchestrator.cli.estate_cmd import load
from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.fabricops import HostRun, RunReport, SiteDiag, run_on_hosts, select_hosts
from orchestrator.fabricops import diag as collect_diag

# Register `exec` with these: the first word that is not an option starts the remote
# command, so its own options (`grep -i`, `ls -s`) are never taken for ours.
EXEC_CONTEXT_SETTINGS: dict[str, Any] = {"allow_interspersed_args": False}


def _print_host(run: HostRun) -> None:
    if run.failure is not None:
        status = f"[bold red]{run.failure}[/]"
    else:
        status = f"[{'green' if run.exit_code == 0 else 'bold red'}]exit {run.exit_code}[/]"
    console.rule(f"[bold]{run.host}[/] {run.address} {status}", align="left")
    # Text, not markup: remote output is data, and must not wrap or be re-styled.
    if run.stdout:
        console.print(Text(run.stdout.rstrip("\n")), soft_wrap=True)
    if run.stderr:
        console.print(Text(run.stderr.rstrip("\n"), style="yellow"), soft_wrap=True)
    if run.error:
        console.print(Text(run.error, style="bold red"), soft_wrap=True)


def print_report(report: RunReport) -> None:
    """Output grouped per host (in estate order), then one summary line."""
    for run in report.results:
        _print_host(run)
    failed = report.failed
    summary = f"{len(report.results)} host(s): {len(report.results) - len(failed)} ok"
    if failed:
        summary += f", failed: {', '.join(r.host for r in failed)}"
    console.print(f"{summary}; exit {report.exit_code}", soft_wrap=True)


@handle_errors
def exec_command(
    command: Annotated[list[str] | None, typer.Argument(
        help="The command and its arguments; joined with spaces and run by the remote shell, as ssh does.",
        show_default=False)] = None,
    site: Annotated[list[str] | None, typer.Option("--site", "-s", help="Every host of this site (repeatable).")]
    = None,
    host: Annotated[list[str] | None, typer.Option("--host", help="This host (repeatable).")] = None,
    all_hosts: Annotated[bool, typer.Option("--all", help="Every call-server host of the estate.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds the command may run on each host.")] = 60.0,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run an ad-hoc command on hosts in parallel over SSH, output grouped per host.

    Example: callfleet exec --site site1 -- uptime

    Options go before the command: from the command's first word on (or
    after `--`) everything is the command. Host keys are checked against the
    estate's known_hosts: a host missing there, or presenting another key,
    is refused and named.

    Exit code, the worst over the hosts: 4 when any host could not run the
    command (SSH refused, host key did not verify, unreachable, timed out);
    otherwise the highest exit status the command returned (0 when it
    succeeded everywhere); 2 for invalid arguments."""
    if not command:
        raise InvalidInput("no command given: callfleet exec --site S -- COMMAND [ARGS...]")
    estate = load(inventory)
    hosts = select_hosts(estate=estate, sites=site or (), hosts=host or (), all_hosts=all_hosts)
    report = run_on_hosts(estate=estate, hosts=hosts, command=" ".join(command), timeout=timeout)
    if json_out:
        emit_json(report)
    else:
        print_report(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def print_diag(report: SiteDiag) -> None:
    """One table row per host, then each host's log tail and errors."""
    table = Table(title=f"site {report.site}")
    for col in ("host", "release (inventory / running)", "uptime s", "shm MiB used/real/max/total",
                "dialogs active/early/processed/failed"):
        table.add_column(col)
    for h in report.hosts:
        running = h.running_release or "?"
        style = "green" if running == h.inventory_release else "bold red"
        shm = (f"{_mib(h.shmmem.used)}/{_mib(h.shmmem.real_used)}/{_mib(h.shmmem.max_used)}/"
               f"{_mib(h.shmmem.total)}") if h.shmmem else "-"
        dlg = (f"{h.dialogs.active}/{h.dialogs.early}/{h.dialogs.processed}/{h.dialogs.failed}"
               if h.dialogs else "-")
        table.add_row(h.host, f"{h.inventory_release} / [{style}]{running}[/]",
                      "-" if h.uptime_s is None else str(h.uptime_s), shm, dlg)
    console.print(table)
    for h in report.hosts:
        console.rule(f"[bold]{h.host}[/] last {len(h.log_tail)} log lines", align="left")
        if h.log_tail:
            console.print(Text("\n".join(h.log_tail)), soft_wrap=True)
        for err in h.errors:
            console.print(Text(err, style="bold red"), soft_wrap=True)


@handle_errors
def diag(
    site: Annotated[str, typer.Option("--site", "-s", help="The site to diagnose.", show_default=False)],
    log_lines: Annotated[int, typer.Option("--lines", "-n", min=0, max=10000,
                                           help="Log lines to show per host.")] = 20,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Diagnostics of each host of a site over SSH: running release, uptime,
    Kamailio shared memory (core.shmmem), dialog counters, last log lines.

    Exit 0 when every host answered every probe; 4 when a host could not be
    reached (SSH, host key) or a probe failed (control socket, log), naming
    the host; 2 for an unknown site."""
    estate = load(inventory)
    report = collect_diag(estate=estate, site=site, log_lines=log_lines)
    if json_out:
        emit_json(report)
    else:
        print_diag(report)
    if not report.ok:
        broken = [h.host for h in report.hosts if not h.ok]
        raise RemoteError(f"diagnostics incomplete on {', '.join(broken)}: "
                          + "; ".join(e for h in report.hosts for e in h.errors))
