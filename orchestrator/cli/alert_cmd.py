"""`callfleet alert test` and `callfleet incidents [show INCIDENT]`: try a channel, list what was
sent, show one incident with its PSAP notification clock."""

from __future__ import annotations

import csv
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.alerting import (
    Alert,
    AlertKind,
    AlertStore,
    NotificationState,
    Notifier,
    Severity,
    default_config_path,
    load_config,
    store_path,
)
from orchestrator.alerting.config import default_store_path
from orchestrator.alerting.psap import NoticeKind, PsapClock
from orchestrator.alerting.store import Incident
from orchestrator.cli.common import InventoryOpt, JsonOpt, console, emit_json, err_console, handle_errors
from orchestrator.cli.documents import (
    AlertTest,
    DeliveryOutcome,
    FailedCallers,
    IncidentList,
    IncidentShow,
    PsapClockView,
    PsapNoticeView,
)
from orchestrator.errors import InvalidInput, RemoteError

app = typer.Typer(help="Alerting: send a test notification through a channel.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Alerting config (default: $CALLFLEET_ALERTS, else policies/alerts.yml).", show_default=False)]

_OK = (NotificationState.SENT, NotificationState.ACKNOWLEDGED)


@app.command("test")
@handle_errors
def alert_test(
    channel: Annotated[str, typer.Option("--channel", "-c", help="Channel name from the config's `channels`.")],
    config: ConfigOpt = None,
    timeout: Annotated[float | None, typer.Option(
        help="Seconds to wait for the outcome (default: the channel's deadline).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Send a test notification through one channel, to every audience that uses it.

    Exit 0 when every delivery was accepted, 4 when one failed or did not finish in time,
    2 for a bad config, an unknown channel or a channel no audience uses."""
    path = config or default_config_path()
    cfg = load_config(path)
    if channel not in cfg.channels:
        raise InvalidInput(f"--channel: no channel {channel!r} in {path}",
                           hint=f"channels: {', '.join(sorted(cfg.channels))}")
    now = datetime.now(UTC)
    # A fresh dedupe key: a test must never be suppressed by an earlier test.
    alert = Alert(kind=AlertKind.TEST, severity=Severity.INFO, since=now, raised_at=now,
                  incident_id="test", dedupe_key=f"test:{channel}:{uuid.uuid4().hex[:12]}")
    routes = cfg.routes(alert, only_channel=channel)
    if not routes:
        raise InvalidInput(f"--channel: no audience in {path} uses channel {channel!r}")
    store = AlertStore(path=store_path(cfg))
    try:
        notifier = Notifier(config=cfg, store=store)
        wait = notifier.longest_delivery_s + 1.0 if timeout is None else timeout
        if not json_out:
            console.print(f"sending a test through {channel} to {', '.join(r.audience for r in routes)} ...")
        handle = notifier.submit(alert, only_channel=channel)
        finished = handle.wait(wait)
        notifier.close()
        outcomes = handle.outcomes()
    finally:
        store.close()
    ok = finished and len(outcomes) == len(routes) and all(o.state in _OK for o in outcomes)
    if json_out:
        emit_json(AlertTest(ok=ok, channel=channel, dedupe_key=alert.dedupe_key, finished=finished,
                            store=str(store.path),
                            deliveries=[DeliveryOutcome(audience=o.audience, channel=o.channel, state=o.state,
                                                        attempts=o.attempts, elapsed_s=round(o.elapsed_s, 3),
                                                        error=o.error) for o in outcomes]))
    else:
        for o in outcomes:
            colour = "green" if o.state in _OK else "bold red"
            console.print(f"  {o.audience}: [{colour}]{o.state.value}[/] after {o.attempts} tries, "
                          f"{o.elapsed_s:.2f}s" + (f" ({o.error})" if o.error else ""), soft_wrap=True)
    if not ok:
        pending = len(routes) - len(outcomes)
        raise RemoteError(f"test through {channel}: " + (f"{pending} deliveries still running after {wait:g}s"
                                                          if pending else "a delivery failed"),
                          hint="see `callfleet incidents` and the channel's server")


def _incident_rows(incident: Incident) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for n in incident.notifications:
        rows.append((n.audience, n.channel, n.state.value, str(n.attempts), n.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
                     n.error or ""))
    return rows


StoreOpt = Annotated[Path | None, typer.Option("--store", help="Alert store (default: the config's `store`).",
                                              show_default=False)]

incidents_app = typer.Typer(help="Incidents and their notifications (the alert store).", invoke_without_command=True)


def _store_for(config: Path | None, store: Path | None) -> Path:
    if store is not None:
        return store
    path = config or default_config_path()
    # Reading needs no secret, so they need not be set; without a config file (and
    # none asked for) the default store is read.
    return store_path(load_config(path, with_secrets=False)) if config or path.exists() else default_store_path()


@incidents_app.callback()
@handle_errors
def incidents(
    ctx: typer.Context,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    last: Annotated[int, typer.Option("--last", min=1, help="Most recent incidents to list.")] = 50,
    old_limit: Annotated[int | None, typer.Option(
        "--limit", min=1, hidden=True,
        help="Deprecated spelling of --last (--limit means SITE[,SITE] elsewhere).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List incidents, newest first, with every notification and its state
    (queued, sent, acknowledged, failed, suppressed). Exit 0, or 2 for a bad config or store.

    `incidents show INCIDENT` shows one, with its PSAP notification clock."""
    if ctx.invoked_subcommand is not None:
        return
    if old_limit is not None:
        err_console.print("[yellow]note:[/] `incidents --limit N` is deprecated: write `--last N` "
                          "(`--limit` names sites on the commands that act on several)", soft_wrap=True)
        last = old_limit
    store = _store_for(config, store)
    found: list[Incident] = []
    if store.exists():
        db = AlertStore(path=store)
        try:
            found = db.incidents(limit=last)
        finally:
            db.close()
    if json_out:
        emit_json(IncidentList(store=str(store), incidents=found))
        return
    if not found:
        console.print(f"no incidents recorded in {store}")
        return
    for inc in found:
        status = "[green]resolved[/]" if inc.resolved else "[bold red]open[/]"
        console.print(f"[bold]{inc.incident_id}[/] {status}  {inc.severity}  last: {inc.last_kind}  "
                      f"alerts: {inc.alerts}  first {inc.first_raised:%Y-%m-%d %H:%M:%S} UTC", soft_wrap=True)
        console.print(_deliveries_table(inc))


def _deliveries_table(incident: Incident) -> Table:
    """Every notification of an incident: audience, channel, state, tries, when, error."""
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("audience", "channel", "state", "tries", "updated (UTC)", "error"):
        table.add_column(col)
    for row in _incident_rows(incident):
        table.add_row(*row)
    return table


def clock_view(clock: PsapClock, incident: Incident) -> PsapClockView:
    """The clock with each notice's deliveries (to the psaps audience, by the notice's key)."""
    notices = []
    for kind in NoticeKind:
        due, sent = clock.due_at(kind), clock.sent_at(kind)
        key = f"{clock.incident_id}:psap:{kind.value}"
        notices.append(PsapNoticeView(
            notice=kind, due_at=due, sent_at=sent,
            on_time=None if sent is None or due is None or kind is NoticeKind.CLOSING else sent <= due,
            deliveries=[n for n in incident.notifications if n.dedupe_key == key]))
    return PsapClockView(site=clock.site, numbers=list(clock.numbers), started_at=clock.started_at,
                         opened_at=clock.discovered_at, closed_at=clock.closed_at, notices=notices)


def _at(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


@incidents_app.command("show")
@handle_errors
def incidents_show(
    incident_id: Annotated[str, typer.Argument(metavar="INCIDENT", help="The incident's id (see `incidents`).")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one incident: its notifications and, when it affected emergency routing, its PSAP
    notification clock (opened; initial notice due/sent; follow-up due/sent; closed; closing
    notice sent). Exit 0, or 2 for a bad config or store or an unknown incident."""
    path = _store_for(config, store)
    found: Incident | None = None
    clock: PsapClock | None = None
    if path.exists():
        db = AlertStore(path=path)
        try:
            found = db.incident(incident_id)
            clock = db.psap_clock(incident_id)
        finally:
            db.close()
    if found is None:
        raise InvalidInput(f"no incident {incident_id!r} in {path}", hint="`callfleet incidents` lists them")
    view = clock_view(clock, found) if clock is not None else None
    if json_out:
        emit_json(IncidentShow(store=str(path), incident=found, psap_clock=view))
        return
    status = "[green]resolved[/]" if found.resolved else "[bold red]open[/]"
    console.print(f"[bold]{found.incident_id}[/] {status}  {found.severity}  last: {found.last_kind}  "
                  f"alerts: {found.alerts}  first {found.first_raised:%Y-%m-%d %H:%M:%S} UTC", soft_wrap=True)
    if view is None:
        console.print("PSAP clock: none (the incident did not affect emergency routing, or no psaps audience)")
    else:
        console.print(f"PSAP clock ({view.site or 'estate'}: {', '.join(view.numbers) or '-'})", soft_wrap=True)
        clock_table = Table(show_edge=False, box=None, padding=(0, 2))
        for col in ("", "due", "sent", "", "deliveries"):
            clock_table.add_column(col)
        clock_table.add_row("started", _at(view.started_at), "", "", "")
        clock_table.add_row("opened", _at(view.opened_at), "", "", "")
        names = {NoticeKind.INITIAL: "initial notice", NoticeKind.FOLLOW_UP: "follow-up",
                 NoticeKind.CLOSING: "closing notice"}
        for n in view.notices:
            verdict = "" if n.on_time is None else "[green]on time[/]" if n.on_time else "[bold red]late[/]"
            due = _at(n.due_at) if n.due_at is not None else "at resolution"
            if n.notice is NoticeKind.FOLLOW_UP and n.sent_at is None and view.closed_at is not None:
                due += " (not owed: closed before)"
            clock_table.add_row(names[n.notice], due, _at(n.sent_at), verdict,
                                ", ".join(f"{d.channel} {d.state.value}" for d in n.deliveries) or "-")
        clock_table.add_row("closed", _at(view.closed_at), "", "", "")
        console.print(clock_table)
    console.print(_deliveries_table(found))


@incidents_app.command("callers")
@handle_errors
def incidents_callers(
    incident_id: Annotated[str, typer.Argument(metavar="INCIDENT", help="The incident's id (see `incidents`).")],
    journal: Annotated[str | None, typer.Option("--journal", help="Watch journal (a SQLite file or a "
                                                "postgresql:// URL). Default: $CALLFLEET_WATCH_JOURNAL, else "
                                                ".callfleet/watch.sqlite beside the inventory.")] = None,
    inventory: InventoryOpt = None,
    before: Annotated[float, typer.Option("--before", min=0, max=86400, help="Also calls that failed this many "
                                          "seconds before the incident opened (while it was being "
                                          "confirmed).")] = 300,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV on stdout (call_id, at_utc, code, number, site, "
                                          "host, caller).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The public's emergency calls that failed at the incident's site(s), or found no site,
    from shortly before it opened until it was resolved (or now): who called, which number,
    when, where, the SIP code. `callfleet watch` collects them from the edge each round, so
    the list is complete within a round or two. Personal data: for call-backs and the
    regulator, not for logs. Exit 0, or 2 for an unknown incident or journal."""
    from orchestrator.cli.common import default_inventory
    from orchestrator.watch.journal import WatchJournal, default_path

    location = journal or default_path(inventory or default_inventory())
    if "://" not in location and not Path(location).is_file():
        raise InvalidInput(f"{location}: no watch journal here", hint="`callfleet watch` creates it (--journal)")
    wj = WatchJournal(location)
    events = [e for e in wj.events() if e.incident == incident_id]
    if not events:
        raise InvalidInput(f"no incident {incident_id!r} in the watch journal {wj.where}",
                           hint="`callfleet incidents` lists them")
    sites = sorted({e.site for e in events if e.site})
    resolved = next((e.ts for e in events if e.kind == "incident_resolved"), None)
    start, end = events[0].ts - before, resolved if resolved is not None else time.time()
    calls = wj.failed_calls(start=start, end=end, sites={*sites, "none"})
    doc = FailedCallers(journal=wj.where, incident=incident_id, sites=sites, start=start, end=end,
                        open=resolved is None, calls=calls)
    if json_out:
        emit_json(doc)
        return
    rows = [(c.call_id, f"{datetime.fromtimestamp(c.at, UTC):%Y-%m-%d %H:%M:%S}", str(c.code), c.number, c.site,
             c.host, c.caller) for c in calls]
    if csv_out:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["call_id", "at_utc", "code", "number", "site", "host", "caller"])
        out.writerows(rows)
        return
    state = "open" if doc.open else "resolved"
    console.print(f"[bold]{incident_id}[/] ({state}, {', '.join(sites) or 'estate'}): {len(calls)} failed calls "
                  f"from {_at(datetime.fromtimestamp(start, UTC))} to {_at(datetime.fromtimestamp(end, UTC))}",
                  soft_wrap=True)
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("when (UTC)", "caller", "number", "site", "host", "code"):
        table.add_column(col)
    for r in rows:
        table.add_row(r[1], r[6], r[3], r[4], r[5], r[2])
    console.print(table)
