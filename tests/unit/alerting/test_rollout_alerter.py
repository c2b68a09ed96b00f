"""The rollout engine's alert port: submits without blocking, flushes (bounded) before exit."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from orchestrator.alerting import AlertStore, Notifier
from orchestrator.rollout.alerts import RolloutAlerter, rollout_alerter
from tests.unit.alerting.conftest import doc, load
from tests.unit.alerting.test_alerting_dispatcher import FAST, FakeChannel

FACTS = {"run": "r1", "site": "lyon", "from": "5.8.1", "to": "5.8.2", "detail": "drill: 112 refused"}


def test_submit_returns_at_once_and_flush_waits_for_every_channel(tmp_path: Path) -> None:
    gate = threading.Event()
    slow = FakeChannel("chat", "webhook")
    fakes = {"chat": slow, "mail": FakeChannel("mail", "smtp"), "sms": FakeChannel("sms", "smpp")}
    original = slow.send

    def held(**kw: object) -> None:
        gate.wait(2)
        original(**kw)  # type: ignore[arg-type]

    slow.send = held  # type: ignore[method-assign]
    alerter = RolloutAlerter(Notifier(config=load(doc(retry=FAST), tmp_path),
                                      store=AlertStore(path=tmp_path / "a.sqlite"), channels=fakes))
    t0 = time.monotonic()
    alerter("gate_failed", FACTS)
    assert time.monotonic() - t0 < 0.5  # the rollback is not held by a slow channel
    assert not alerter.flush(timeout=0.2)  # still pending: flush says so instead of hanging
    gate.set()
    assert alerter.flush(timeout=5)
    assert slow.sent and fakes["mail"].sent and fakes["sms"].sent


def test_a_dead_channel_is_marked_failed_and_flush_stays_bounded(tmp_path: Path) -> None:
    fakes = {"chat": FakeChannel("chat", "webhook", fail=99), "mail": FakeChannel("mail", "smtp"),
             "sms": FakeChannel("sms", "smpp")}
    store = AlertStore(path=tmp_path / "a.sqlite")
    alerter = RolloutAlerter(Notifier(config=load(doc(retry=FAST), tmp_path), store=store, channels=fakes))
    alerter("rolled_back", FACTS)
    assert alerter.flush()
    states = {d.channel: d.state.value for d in store.deliveries()}
    assert states["chat"] == "failed" and states["mail"] == "sent" and states["sms"] == "sent"


def test_no_config_means_no_alerter_and_says_why(tmp_path: Path) -> None:
    alerter, why = rollout_alerter(tmp_path / "absent.yml")
    assert alerter is None and "absent.yml" in why
