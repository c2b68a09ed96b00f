"""`callfleet probe`: synthetic emergency calls through a site, judged per number."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import InventoryOpt, JsonOpt, console, emit_json, handle_errors
from orchestrator.cli.documents import ProbeDocument
from orchestrator.cli.estate_cmd import load
from orchestrator.errors import InvalidInput
from orchestrator.probe.runner import ProbeReport, probe_site


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def print_reports(reports: list[ProbeReport]) -> None:
    """The human table: one row per site and number."""
    table = Table(title="synthetic emergency calls")
    for col in ("site", "number", "attempted", "answered", "failed (cause)", "SER", "ISA",
                "SRD p50/p95/max ms", "retrans"):
        table.add_column(col, justify="right" if col not in ("site", "failed (cause)") else "left")
    for rep in reports:
        for n in rep.numbers:
            causes = ", ".join(f"{k}:{v}" for k, v in n.failures.items())
            ok = n.ser == 1.0
            table.add_row(rep.site, n.number, str(n.attempted), str(n.answered),
                          f"{n.failed}" + (f" ({causes})" if causes else ""),
                          f"[{'green' if ok else 'bold red'}]{_pct(n.ser)}[/]", _pct(n.isa),
                          f"{_ms(n.srd_p50_ms)}/{_ms(n.srd_p95_ms)}/{_ms(n.srd_max_ms)}",
                          str(n.retransmissions))
    console.print(table)


@handle_errors
def probe(
    site: Annotated[list[str] | None, typer.Option("--site", "-s", help="Site to probe (repeatable).")] = None,
    all_sites: Annotated[bool, typer.Option("--all", help="Probe every site.")] = False,
    host: Annotated[str | None, typer.Option(help="Only this host of the site.")] = None,
    number: Annotated[list[str] | None, typer.Option("--number",
                                                     help="Only this emergency number (repeatable).")] = None,
    calls: Annotated[int, typer.Option(help="Calls per number per site (split over its hosts).")] = 100,
    rate: Annotated[float, typer.Option(help="Calls per second per number per site.")] = 50.0,
    min_ser: Annotated[float, typer.Option(help="Lowest acceptable SER (0-1) for exit 0.")] = 1.0,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Synthetic emergency calls (SIPp) through a site, reported per number:
    attempted, answered, failed by cause, SER, ISA, SRD p50/p95/max, retransmissions.

    Exit 0 when every number's SER >= --min-ser, 5 when not, 4 when a site does not answer,
    3 when SIPp is missing."""
    estate = load(inventory)
    if all_sites == bool(site):
        raise InvalidInput("give --site S (repeatable) or --all")
    if host and (all_sites or len(site or []) != 1):
        raise InvalidInput("--host needs exactly one --site")
    try:
        targets = list(estate.sites) if all_sites else [estate.site(s) for s in site or []]
    except KeyError as exc:
        raise InvalidInput(f"--site: {exc.args[0]}") from None
    reports = []
    for s in targets:
        if not json_out:
            console.print(f"probing {s.name}: {calls} calls per number at {rate:g}/s ...")
        reports.append(probe_site(estate=estate, site=s, host=host, numbers=number, calls=calls, rate=rate))
    healthy = all(n.ser is not None and n.ser >= min_ser for r in reports for n in r.numbers)
    if json_out:
        emit_json(ProbeDocument(healthy=healthy, min_ser=min_ser, sites=reports))
    else:
        print_reports(reports)
    if not healthy:
        raise typer.Exit(5)
