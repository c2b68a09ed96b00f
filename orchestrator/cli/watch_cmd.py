"""`callfleet watch`: supervise emergency-call routing continuously (docs/WATCH.md)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from orchestrator.alerting import AlertStore, Notifier, load_config, store_path
from orchestrator.alerting.config import default_config_path
from orchestrator.cli.common import (
    SCHEMA_VERSION,
    InventoryOpt,
    JsonOpt,
    console,
    default_inventory,
    err_console,
    handle_errors,
)
from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate
from orchestrator.metrics.prometheus import provider_for
from orchestrator.policy.load import load_policy
from orchestrator.policy.watch import WatchPolicy
from orchestrator.rollout.facts import observe
from orchestrator.sipp import scenarios
from orchestrator.traffic.edge import SshEdge
from orchestrator.traffic.failed_calls import EdgeFailedCalls
from orchestrator.traffic.steering import dispatcher_for
from orchestrator.watch.journal import WatchJournal, default_path
from orchestrator.watch.observe import LiveCounter, LiveReader, ReleaseReader, SippProber
from orchestrator.watch.ports import Ports
from orchestrator.watch.report import RoundReport, Summary
from orchestrator.watch.status import status_line
from orchestrator.watch.supervisor import Supervisor

MAX_ROUNDS = 10_000_000


def _policy(path: Path | None, interval: float | None) -> WatchPolicy:
    pol: WatchPolicy = load_policy(path).watch
    if interval is None:
        return pol
    try:
        return WatchPolicy.model_validate({**pol.model_dump(), "interval_s": interval})
    except ValidationError as exc:
        msg = " ".join(exc.errors()[0]["msg"].removeprefix("Value error, ").split())
        raise InvalidInput(f"--interval {interval:g}: {msg}") from None


def _notifier(path: Path | None) -> tuple[Notifier | None, str, AlertStore | None]:
    """The notifier, what to say of it, and the PSAP ledger (the alert store, when the
    config has a `psaps` audience to send the PSAP notices to)."""
    config_path = path or default_config_path()
    if not config_path.exists():
        if path is not None:
            raise InvalidInput(f"--alerts: {path}: no such alert config")
        return None, f"no alert config at {config_path}: incidents are journalled but nobody is notified", None
    config = load_config(config_path)
    store = AlertStore(path=store_path(config))
    note = f"alerts per {config_path}"
    if "psaps" not in config.audiences:
        note += " (no psaps audience: no PSAP notices)"
    return Notifier(config=config, store=store), note, store if "psaps" in config.audiences else None


def _ports(estate: Estate, pol: WatchPolicy, notifier: Notifier | None) -> tuple[Ports, list[str]]:
    notes: list[str] = []
    live = None
    counter = None
    if pol.live_metrics:
        if estate.metrics_url is None:
            raise InvalidInput("the inventory names no metrics server (callfleet_metrics_url) for live metrics",
                               hint="set `watch: {live_metrics: false}` in the policy to supervise with probes only")
        # A hung server must not stretch a round: every query is bounded well inside the interval.
        provider = provider_for(estate, timeout=max(1.0, min(5.0, pol.interval_s / 4)))
        live = LiveReader(provider=provider, sites=[s.name for s in estate.sites], window_s=pol.window_s)
        counter = LiveCounter(provider=provider)
    else:
        notes.append("live metrics off (policy): probes only")
    steering = None
    failed_calls = None
    if estate.edge is not None:
        steering = dispatcher_for(estate)
        failed_calls = EdgeFailedCalls(SshEdge(estate))
    else:
        notes.append("no edge steering in the inventory: incidents are raised, nothing is drained")
    releases = ReleaseReader(estate=estate, refresh_s=pol.release_refresh_s, observe=observe)
    return Ports(prober=SippProber(estate=estate, policy=pol), live=live, counter=counter, steering=steering,
                 releases=releases.releases, alerts=notifier, failed_calls=failed_calls), notes


def _emit(json_out: bool) -> Any:
    def emit(report: RoundReport) -> None:
        if json_out:
            # JSON Lines: one document per round, each with its schema_version like every document.
            line = {"schema_version": SCHEMA_VERSION, **report.model_dump(mode="json")}
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        else:
            console.print(status_line(report), soft_wrap=True)

    return emit


def _run_with_signals(supervisor: Supervisor, *, rounds: int | None, duration: float | None) -> Summary:
    """Run; the first SIGTERM/SIGINT ends the loop after its round, a second one at once."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if supervisor.stopping:
            raise KeyboardInterrupt
        err_console.print(f"{signal.Signals(signum).name}: stopping after this round (again to stop at once)")
        supervisor.request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return supervisor.run(rounds=rounds, duration_s=duration)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@handle_errors
def watch(
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy YAML; its `watch:` section "
                                                "(default: policies/default.yml).")] = None,
    interval: Annotated[float | None, typer.Option("--interval", help="Seconds between rounds "
                                                   "(default: the policy's watch.interval_s).")] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Stop after N rounds.", min=1,
                                               max=MAX_ROUNDS)] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Stop after S seconds.", min=0.1)] = None,
    alerts: Annotated[Path | None, typer.Option("--alerts", help="Alert config (default: $CALLFLEET_ALERTS, "
                                                "else policies/alerts.yml; none: journal only).")] = None,
    journal: Annotated[str | None, typer.Option("--journal", help="Watch journal: a SQLite file, or "
                                                "postgresql://... shared by several watchers. Default: "
                                                "$CALLFLEET_WATCH_JOURNAL, else .callfleet/watch.sqlite "
                                                "beside the inventory.")] = None,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Supervise every site and emergency number continuously: synthetic calls each round,
    live metrics, incidents with hysteresis, automatic drain and release failover when the
    policy allows, alerts on incident opened/updated/resolved. Runs until --rounds or
    --duration, or SIGTERM/SIGINT (one line per round; --json: one JSON object per round).

    Exit 0 healthy at the end (or stopped by a signal), 5 a site incident still open, 4 only
    supervision-blind incidents open (2 bad input, 3 SIPp missing)."""
    # A host SSH cannot reach is reported as one note per release refresh; paramiko's own
    # tracebacks would flood a service's log with the same fact.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    inv = inventory or default_inventory()
    estate = load_inventory(inv)
    pol = _policy(policy, interval)
    scenarios.sipp_binary()  # a missing SIPp is an error before the first round, not a blind estate
    notifier, alert_note, psap_ledger = _notifier(alerts)
    ports, notes = _ports(estate, pol, notifier)
    ports.psap = psap_ledger
    wj = WatchJournal(journal or default_path(inv))
    supervisor = Supervisor(sites=[s.name for s in estate.sites], numbers=[n.number for n in estate.numbers],
                            policy=pol, ports=ports, journal=wj, emit=_emit(json_out))
    err_console.print(f"watching {len(estate.sites)} sites x {len(estate.numbers)} numbers every "
                      f"{pol.interval_s:g}s (window {pol.window_s:g}s, {pol.calls_per_number} calls per number "
                      f"per site); journal {wj.where}; {alert_note}", soft_wrap=True)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    try:
        summary = _run_with_signals(supervisor, rounds=rounds, duration=duration)
    finally:
        if notifier is not None:
            notifier.close()
    err_console.print(f"watch stopped ({summary.stopped_by}) after {summary.rounds} round(s); "
                      f"{len(summary.open_incidents)} incident(s) open", soft_wrap=True)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
