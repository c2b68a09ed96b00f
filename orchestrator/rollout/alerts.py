"""Hand rollout incidents to the alerting interface (never blocking the rollout)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.alerting import Alert, AlertStore, Notifier, load_config, store_path
from orchestrator.alerting.config import default_config_path
from orchestrator.alerting.dispatcher import DispatchHandle

_SEVERITY = {"gate_failed": "critical", "rolled_back": "warning", "inconclusive_pause": "warning",
             "rollout_stuck": "critical", "fleet_guard": "critical"}
_ACTIONS = {"gate_failed": ["drained", "rollout_halted"], "rolled_back": ["rolled_back", "traffic_restored"],
            "inconclusive_pause": ["rollout_paused"], "rollout_stuck": ["rollout_halted"],
            "fleet_guard": ["drained", "rollout_halted"]}


@dataclass
class RolloutAlerter:
    """The executor's alert port: submits in the background (a rollback never waits for a
    channel), and `flush` lets the process wait, bounded, for deliveries before it exits,
    since the delivery threads die with it."""

    notifier: Notifier
    handles: list[DispatchHandle] = field(default_factory=list)

    def __call__(self, kind: str, facts: dict[str, Any]) -> None:
        self.handles.append(self.notifier.submit(Alert.model_validate({
            "kind": kind, "severity": _SEVERITY.get(kind, "warning"),
            "failing": {"sites": [facts["site"]] if facts.get("site") else []},
            "since": datetime.now(UTC), "release": {"from": facts.get("from"), "to": facts.get("to")},
            "actions": _ACTIONS.get(kind, []), "note": str(facts.get("detail", ""))[:500],
            "incident_id": f"rollout-{facts['run']}", "dedupe_key": f"rollout-{facts['run']}:{kind}",
        })))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for every submitted alert (at most `timeout`, default the longest delivery);
        True when all finished."""
        deadline = time.monotonic() + (self.notifier.longest_delivery_s + 1.0 if timeout is None else timeout)
        return all(handle.wait(max(0.0, deadline - time.monotonic())) for handle in self.handles)


def rollout_alerter(config_path: Path | None = None) -> tuple[RolloutAlerter | None, str]:
    """The executor's alert port, or None (and why) when no alert config exists."""
    path = config_path or default_config_path()
    if not path.exists():
        return None, f"no alert config at {path}: incidents are journalled but nobody is notified"
    config = load_config(path)
    return RolloutAlerter(Notifier(config=config, store=AlertStore(path=store_path(config)))), \
        f"alerts go to the audiences of {path}"
