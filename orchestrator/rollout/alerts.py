"""Hand rollout incidents to the alerting interface (never blocking the rollout)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.alerting import Alert, AlertStore, Notifier, load_config, store_path
from orchestrator.alerting.config import default_config_path

_SEVERITY = {"gate_failed": "critical", "rolled_back": "warning", "inconclusive_pause": "warning",
             "rollout_stuck": "critical"}
_ACTIONS = {"gate_failed": ["drained", "rollout_halted"], "rolled_back": ["rolled_back", "traffic_restored"],
            "inconclusive_pause": ["rollout_paused"], "rollout_stuck": ["rollout_halted"]}


def rollout_alerter(config_path: Path | None = None) -> tuple[Callable[[str, dict[str, Any]], None] | None, str]:
    """A callback for the executor, or None (and why) when no alert config exists."""
    path = config_path or default_config_path()
    if not path.exists():
        return None, f"no alert config at {path}: incidents are journalled but nobody is notified"
    config = load_config(path)
    notifier = Notifier(config=config, store=AlertStore(path=store_path(config)))

    def send(kind: str, facts: dict[str, Any]) -> None:
        notifier.submit(Alert.model_validate({
            "kind": kind, "severity": _SEVERITY.get(kind, "warning"),
            "failing": {"sites": [facts["site"]] if facts.get("site") else []},
            "since": datetime.now(UTC), "release": {"from": facts.get("from"), "to": facts.get("to")},
            "actions": _ACTIONS.get(kind, []), "note": str(facts.get("detail", ""))[:500],
            "incident_id": f"rollout-{facts['run']}", "dedupe_key": f"rollout-{facts['run']}:{kind}",
        }))

    return send, f"alerts go to the audiences of {path}"
