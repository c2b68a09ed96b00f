"""`callfleet alert test` and `callfleet incidents`: try a channel, list what was sent."""

from __future__ import annotations

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
from orchestrator.alerting.store import Incident
from orchestrator.cli.common import JsonOpt, console, emit_json, handle_errors
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
        emit_json({"ok": ok, "channel": channel, "dedupe_key": alert.dedupe_key, "finished": finished,
                   "store": str(store.path),
                   "deliveries": [{"audience": o.audience, "channel": o.channel, "state": o.state.value,
                                   "attempts": o.attempts, "elapsed_s": round(o.elapsed_s, 3), "error": o.error}
                                  for o in outcomes]})
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


@handle_errors
def incidents(
    config: ConfigOpt = None,
    store: Annotated[Path | None, typer.Option("--store", help="Alert store (default: the config's `store`).",
                                               show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most recent incidents to list.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List incidents, newest first, with every notification and its state
    (queued, sent, acknowledged, failed, suppressed). Exit 0, or 2 for a bad config or store."""
    if store is None:
        path = config or default_config_path()
        # Listing needs no secret, so they need not be set; without a config file (and
        # none asked for) the default store is read.
        store = store_path(load_config(path, with_secrets=False)) if config or path.exists() else default_store_path()
    found: list[Incident] = []
    if store.exists():
        db = AlertStore(path=store)
        try:
            found = db.incidents(limit=limit)
        finally:
            db.close()
    if json_out:
        emit_json({"store": str(store), "incidents": [i.model_dump(mode="json") for i in found]})
        return
    if not found:
        console.print(f"no incidents recorded in {store}")
        return
    for inc in found:
        status = "[green]resolved[/]" if inc.resolved else "[bold red]open[/]"
        console.print(f"[bold]{inc.incident_id}[/] {status}  {inc.severity}  last: {inc.last_kind}  "
                      f"alerts: {inc.alerts}  first {inc.first_raised:%Y-%m-%d %H:%M:%S} UTC", soft_wrap=True)
        table = Table(show_edge=False, box=None, padding=(0, 2))
        for col in ("audience", "channel", "state", "tries", "updated (UTC)", "error"):
            table.add_column(col)
        for row in _incident_rows(inc):
            table.add_row(*row)
        console.print(table)
