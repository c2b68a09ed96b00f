"""Loopback servers and a config pointing at them, for the alerting integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.alerting import Alert, AlertConfig
from orchestrator.alerting.config import parse_config
from tests.integration_alerting.servers import HOST, BlackHole, HttpReceiver, SmppServer, SmtpServer

SMTP_PASSWORD = "smtp-Pa55-7f3c9e"
SMPP_PASSWORD = "sm9Zq4x"  # SMPP 3.4 passwords are at most 8 characters
WEBHOOK_TOKEN = "hook-tok-51d2a8c0"
SECRETS = {"T_SMTP_PASSWORD": SMTP_PASSWORD, "T_SMPP_PASSWORD": SMPP_PASSWORD, "T_HOOK_TOKEN": WEBHOOK_TOKEN}


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    yield server
    server.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(user="callfleet", password=SMTP_PASSWORD)
    yield server
    server.close()


@pytest.fixture
def smsc() -> Iterator[SmppServer]:
    server = SmppServer(password=SMPP_PASSWORD)
    yield server
    server.close()


@pytest.fixture
def blackhole() -> Iterator[BlackHole]:
    server = BlackHole()
    yield server
    server.close()


def config_doc(*, http_port: int, smtp_port: int, smpp_port: int, store: Path, **over: Any) -> dict[str, Any]:
    """A config with the three channels on the given loopback ports; `over` replaces top-level keys."""
    fast = {"attempts": 3, "backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 2, "deadline_s": 8}
    doc: dict[str, Any] = {
        "version": 1,
        "store": str(store),
        "dedupe_window_s": 600,
        "retry": fast,
        "channels": {
            "ops-chat": {"type": "webhook", "url": f"http://{HOST}:{http_port}/hooks/ops", "format": "slack",
                         "token_secret": "T_HOOK_TOKEN"},
            "mail": {"type": "smtp", "host": HOST, "port": smtp_port, "from": "callfleet@example.org",
                     "username": "callfleet", "password_secret": "T_SMTP_PASSWORD"},
            "sms": {"type": "smpp", "host": HOST, "port": smpp_port, "system_id": "callfleet",
                    "password_secret": "T_SMPP_PASSWORD", "source_addr": "CALLFLEET", "throughput": 200},
        },
        "audiences": {
            "crisis_cell": {"language": "fr", "webhooks": ["ops-chat"], "email": ["crise@example.org"],
                            "sms": ["+33600000001", "+33600000002"]},
        },
    }
    doc.update(over)
    return doc


def make_config(tmp_path: Path, doc: dict[str, Any], *, env: dict[str, str] | None = None) -> AlertConfig:
    """Write the doc to a file (as an operator would) and load it."""
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return parse_config(yaml.safe_load(path.read_text(encoding="utf-8")), path=path,
                        env=SECRETS if env is None else env)


def lyon_alert(**over: Any) -> Alert:
    """The 2021 incident as an alert: 112 and 18 failing at Lyon since 14:45 UTC."""
    fields: dict[str, Any] = dict(
        kind="gate_failed", severity="critical", failing={"numbers": ["112", "18"], "sites": ["lyon"]},
        since=datetime(2021, 6, 2, 14, 45, tzinfo=UTC), release={"from": "5.8.1", "to": "5.8.2"},
        actions=["drained", "rolled_back"], evidence={"ser_112": 0.62, "baseline_ser_112": 0.998},
        substitute_numbers=["0472000000"])
    fields.update(over)
    return Alert.model_validate(fields)
