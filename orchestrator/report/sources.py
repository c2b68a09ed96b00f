"""Where a report's facts come from: the journal (through its public, read-only API), the
alert store (deliveries are not journalled) and the run's policy file (the tests' alpha).
The only I/O of the report; every failure is a CallfleetError naming the file."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from pydantic import ValidationError

from orchestrator.alerting import AlertStore
from orchestrator.alerting.config import default_config_path, default_store_path, load_config, store_path
from orchestrator.alerting.models import Delivery
from orchestrator.errors import CallfleetError, InvalidInput
from orchestrator.policy.load import load_policy
from orchestrator.report.build import build_report
from orchestrator.report.model import RolloutReport
from orchestrator.rollout.journal import Journal, Run, resolve_run


def default_alert_store() -> Path | None:
    """The store the rollout's alerter wrote to: the alert config's, else the default path;
    None when there is none (a report never creates one)."""
    config = default_config_path()
    try:
        path = store_path(load_config(config, with_secrets=False)) if config.exists() else default_store_path()
    except CallfleetError:
        path = default_store_path()
    return path if path.is_file() else None


def deliveries(path: Path, run_id: str) -> list[Delivery]:
    """The deliveries of the run's alerts (incident `rollout-RUN`, as rollout/alerts.py names it)."""
    if not path.is_file():
        raise InvalidInput(f"{path}: no alert store here", hint="--alerts names the store of the alert config")
    try:
        store = AlertStore(path=path)
        try:
            return store.deliveries(incident_id=f"rollout-{run_id}")
        finally:
            store.close()
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(f"{path}: not a readable alert store ({exc})") from None


def policy_alpha(run: Run) -> float | None:
    """The gate's alpha from the run's policy file, only while the file is the one the run
    was planned with (its digest in the journal): a changed policy says nothing about it."""
    path = Path(run.policy)
    recorded = run.progress.policy_digest
    try:
        if not path.is_file() or (recorded and hashlib.sha256(path.read_bytes()).hexdigest() != recorded):
            return None
        return load_policy(path).gate.canary.alpha
    except (CallfleetError, OSError):
        return None


def load_report(journal_path: Path | str, run_id: str | None, *, alerts: Path | None = None,
                use_default_alerts: bool = True) -> RolloutReport:
    """The report of a run of the journal at `journal_path` (a file or a store URL) (InvalidInput for a missing or
    foreign journal, an unknown run, an unreadable alert store)."""
    journal = Journal(journal_path, read_only=True)
    run = resolve_run(journal, run_id)
    store = alerts if alerts is not None else (default_alert_store() if use_default_alerts else None)
    found = deliveries(store, run.id) if store else []
    try:
        return build_report(run, journal.events(run.id), deliveries=found, alerts_source=str(store) if store else None,
                            alpha=policy_alpha(run))
    except (ValidationError, KeyError, ValueError, TypeError) as exc:
        # a plan or event this version does not understand: a tampered journal, or a newer callfleet's
        raise InvalidInput(f"rollout {run.id} in {journal_path}: the journal holds what a report cannot read "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                           hint="`callfleet rollout history RUN --json` shows the raw events") from None
