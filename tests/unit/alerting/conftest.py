"""Helpers for the alerting unit tests: a config document and the Lyon alert."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchestrator.alerting import Alert, AlertConfig
from orchestrator.alerting.config import parse_config

ENV = {"SMTP_PW": "smtp-secret-1", "SMPP_PW": "smpp123", "HOOK_TOKEN": "hook-token-2"}


def doc(**over: Any) -> dict[str, Any]:
    """A valid config document on loopback; top-level keys replaced by `over`."""
    d: dict[str, Any] = {
        "version": 1,
        "dedupe_window_s": 60,
        "retry": {"attempts": 3, "backoff_s": 0.01, "max_backoff_s": 0.02, "timeout_s": 1, "deadline_s": 5},
        "channels": {
            "chat": {"type": "webhook", "url": "http://127.0.0.1:9/hook", "format": "slack",
                     "token_secret": "HOOK_TOKEN"},
            "mail": {"type": "smtp", "host": "127.0.0.1", "port": 9, "from": "callfleet@example.org",
                     "username": "u", "password_secret": "SMTP_PW"},
            "sms": {"type": "smpp", "host": "127.0.0.1", "port": 9, "system_id": "cf", "source_addr": "CALLFLEET",
                    "password_secret": "SMPP_PW"},
        },
        "audiences": {
            "crisis_cell": {"language": "fr", "webhooks": ["chat"], "email": ["crise@example.org"],
                            "sms": ["+33600000001"]},
            "partner_operators": {"language": "en", "min_severity": "critical",
                                  "kinds": ["incident_opened", "incident_resolved"],
                                  "email": ["noc@example.net"]},
        },
    }
    d.update(over)
    return d


def load(raw: Any, tmp_path: Path, *, env: dict[str, str] | None = None) -> AlertConfig:
    """Write raw YAML (or a document) to alerts.yml and parse it as load_config would."""
    path = tmp_path / "alerts.yml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return parse_config(yaml.safe_load(path.read_text(encoding="utf-8")), path=path, env=ENV if env is None else env)


def lyon(**over: Any) -> Alert:
    """112 and 18 failing at Lyon since 14:45 UTC, release 5.8.1 -> 5.8.2, drained and rolled back."""
    fields: dict[str, Any] = dict(
        kind="gate_failed", severity="critical", failing={"numbers": ["112", "18"], "sites": ["lyon"]},
        since=datetime(2021, 6, 2, 14, 45, tzinfo=UTC), raised_at=datetime(2021, 6, 2, 15, 0, tzinfo=UTC),
        release={"from": "5.8.1", "to": "5.8.2"}, actions=["drained", "rolled_back"],
        evidence={"ser_112": 0.62, "calls": 400}, substitute_numbers=["04 72 00 00 00"])
    fields.update(over)
    return Alert.model_validate(fields)
