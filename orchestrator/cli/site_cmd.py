"""`callfleet site upgrade|rollback`: one site, by hand (break-glass) or from pipelines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.ansible.runner import TaskEvent
from orchestrator.cli.common import InventoryOpt, JsonOpt, console, default_inventory, emit_json, handle_errors
from orchestrator.cli.documents import Steering
from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import load_inventory
from orchestrator.release.store import default_store, find_bundle
from orchestrator.site.ops import SiteOps
from orchestrator.site.upgrade import SiteReport, Step, rollback_site, upgrade_site
from orchestrator.traffic.steering import dispatcher_for

app = typer.Typer(help="Change one site: drain it, upgrade or roll back its hosts through Ansible, "
                       "check them (testinfra), give its traffic back.", no_args_is_help=True)


def _ops(inventory: Path | None, json_out: bool, drain_timeout: float, *, site: str) -> SiteOps:
    """SiteOps for the inventory's estate; InvalidInput when `site` is not one of its sites."""
    path = inventory or default_inventory()
    estate = load_inventory(path)
    try:
        estate.site(site)
    except KeyError as exc:
        raise InvalidInput(str(exc.args[0])) from None

    def show(ev: TaskEvent) -> None:
        if ev.status in ("changed", "failed", "unreachable"):
            colour = {"changed": "yellow", "failed": "bold red", "unreachable": "bold red"}[ev.status]
            console.print(f"  [{colour}]{ev.status:>11}[/] {ev.host}: {ev.task}"
                          + (f" - {ev.message}" if ev.message and ev.status != "changed" else ""))

    return SiteOps(estate=estate, inventory=path, steering=dispatcher_for(estate),
                   on_event=None if json_out else show, drain_timeout_s=drain_timeout)


def _step_printer(json_out: bool) -> Callable[[Step], None] | None:
    if json_out:
        return None

    def show(step: Step) -> None:
        mark = "[green]ok[/]" if step.ok else "[bold red]FAILED[/]"
        console.print(f"{mark} {step.name} ({step.seconds:.1f}s){' - ' + step.detail if step.detail else ''}")

    return show


def _finish(report: SiteReport, json_out: bool) -> None:
    if json_out:
        emit_json(report)
    elif report.outcome:
        table = Table(title=f"site {report.site}: {report.outcome}")
        table.add_column("host")
        table.add_column("changes", justify="right")
        for host, n in sorted(report.changed_hosts.items()):
            table.add_row(host, str(n))
        console.print(table)


DrainOpt = Annotated[float, typer.Option(help="Seconds to wait for calls in flight to end after the drain.")]


@app.command()
@handle_errors
def upgrade(
    site: Annotated[str, typer.Argument(help="Site to upgrade.")],
    to: Annotated[str, typer.Option("--to", help="Release version to install.")],
    check: Annotated[bool, typer.Option("--check", help="Report what would change; change nothing.")] = False,
    keep_drained: Annotated[bool, typer.Option("--keep-drained", help="Leave the site drained after a good "
                                               "upgrade (gate it, then `site undrain`).")] = False,
    store: Annotated[Path | None, typer.Option(help="Release store holding `callserver-<V>/` bundles.")] = None,
    drain_timeout: DrainOpt = 30.0,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Drain SITE, upgrade its hosts to --to, post-check them (testinfra), undrain.

    A failure after the switch rolls the site back and restores its traffic (exit 6);
    a failed rollback leaves the site drained (exit 7). A bundle failing verification
    (exit 2) or a failed preflight (exit 4) touches nothing live."""
    ops = _ops(inventory, json_out, drain_timeout, site=site)
    bundle = find_bundle(store or default_store(), to)
    # A failure raises CallfleetError: under --json, handle_errors prints the one error document.
    report = upgrade_site(ops, site=site, version=to, bundle=bundle, check=check, keep_drained=keep_drained,
                          on_step=_step_printer(json_out))
    _finish(report, json_out)


@app.command()
@handle_errors
def rollback(
    site: Annotated[str, typer.Argument(help="Site to roll back.")],
    drain_timeout: DrainOpt = 30.0,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Break-glass: drain SITE, put back each host's previous release, verify, undrain."""
    ops = _ops(inventory, json_out, drain_timeout, site=site)
    report = rollback_site(ops, site=site, on_step=_step_printer(json_out))
    _finish(report, json_out)


@app.command()
@handle_errors
def drain(
    site: Annotated[str, typer.Argument(help="Site to take out of emergency traffic.")],
    drain_timeout: DrainOpt = 30.0,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Move the site's share of emergency traffic to the other sites; wait for its calls to end."""
    ops = _ops(inventory, json_out, drain_timeout, site=site)
    waited = ops.drain(site)
    _print_steering(ops, json_out, f"{site} drained; calls in flight ended after {waited:.2f}s")


@app.command()
@handle_errors
def undrain(
    site: Annotated[str, typer.Argument(help="Site to give its traffic back.")],
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give the site its weight's share of emergency traffic again."""
    ops = _ops(inventory, json_out, 30.0, site=site)
    ops.undrain(site)
    _print_steering(ops, json_out, f"{site} undrained")


def _print_steering(ops: SiteOps, json_out: bool, message: str) -> None:
    state = ops.steering.state()
    if json_out:
        emit_json(Steering(message=message, sites=state))
        return
    console.print(message)
    for name, st in state.items():
        console.print(f"  {name}: weight {st.weight}, {'drained' if st.drained else 'active'}, "
                      f"share {100 * st.share:.1f}%")
