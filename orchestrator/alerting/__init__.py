"""Alerting: tell the crisis cell, authorities, PSAPs, partner operators and on-call staff.

Producers (the rollout engine, the supervisor) build an `Alert` and call
`Notifier.submit(alert)`, which returns at once; see docs/ALERTING.md.
"""

from __future__ import annotations

from orchestrator.alerting.config import AlertConfig, default_config_path, load_config, store_path
from orchestrator.alerting.dispatcher import DispatchHandle, Notifier, Outcome
from orchestrator.alerting.models import (
    Action,
    Alert,
    AlertKind,
    Failing,
    NotificationState,
    ReleaseChange,
    Severity,
)
from orchestrator.alerting.store import AlertStore

__all__ = [
    "Action",
    "Alert",
    "AlertConfig",
    "AlertKind",
    "AlertStore",
    "DispatchHandle",
    "Failing",
    "NotificationState",
    "Notifier",
    "Outcome",
    "ReleaseChange",
    "Severity",
    "default_config_path",
    "load_config",
    "store_path",
]
