"""`callfleet estate show|validate`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from orchestrator.cli.common import (
    InventoryOpt,
    JsonOpt,
    console,
    default_inventory,
    emit_json,
    handle_errors,
)
from orchestrator.cli.documents import EstateValidation
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate

app = typer.Typer(help="Inspect and validate the estate described by an inventory.",
                  no_args_is_help=True)


def load(inventory: Path | None) -> Estate:
    """Load the given inventory, or the default one."""
    return load_inventory(inventory or default_inventory())


@app.command()
@handle_errors
def validate(inventory: InventoryOpt = None, json_out: JsonOpt = False) -> None:
    """Check an inventory; one line naming the file and key on error (exit 2)."""
    path = inventory or default_inventory()
    estate = load_inventory(path)
    if json_out:
        emit_json(EstateValidation(inventory=str(path), valid=True, estate=estate.name, sites=len(estate.sites),
                                   hosts=len(estate.hosts)))
    else:
        console.print(f"{path}: valid: estate {estate.name}, {len(estate.sites)} sites, "
                      f"{len(estate.hosts)} hosts")


@app.command()
@handle_errors
def show(inventory: InventoryOpt = None, json_out: JsonOpt = False) -> None:
    """Print the estate: sites, hosts, capacity, weights, releases, emergency routes."""
    estate = load(inventory)
    if json_out:
        emit_json(estate)
        return
    table = Table(title=f"estate {estate.name}" + (" (lab)" if estate.lab else ""))
    for col in ("site", "region", "capacity cps", "weight", "host", "address", "ssh", "release"):
        table.add_column(col)
    for site in estate.sites:
        for i, host in enumerate(site.hosts):
            first = i == 0
            table.add_row(site.name if first else "", (site.region or "-") if first else "",
                          str(site.capacity_cps) if first else "", str(site.weight) if first else "",
                          host.name, str(host.address), str(host.ssh_port), host.release)
    console.print(table)
    numbers = Table(title="emergency numbers")
    for col in ("number", "label", "probe route", "PSAP"):
        numbers.add_column(col)
    for n in estate.numbers:
        numbers.add_row(n.number, n.label, n.probe_route, n.psap_uri)
    console.print(numbers)
    console.print(f"N+1: without its largest site the estate carries "
                  f"{estate.peak_capacity_without_largest} calls/s")
