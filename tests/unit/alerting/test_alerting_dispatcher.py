"""The notifier with in-memory channels: fan-out, retries, isolation, dedupe, redaction."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from orchestrator.alerting import AlertStore, NotificationState, Notifier
from orchestrator.alerting.channels.base import ChannelError, Progress, SendContext
from orchestrator.alerting.models import Alert
from orchestrator.alerting.templates import Message
from tests.unit.alerting.conftest import ENV, doc, load, lyon


class FakeChannel:
    """Records sends; fails the first `fail` tries; `block` holds every try until released."""

    def __init__(self, name: str, ctype: str, *, fail: int = 0, permanent: bool = False,
                 block: threading.Event | None = None, error: str = "down") -> None:
        self.name, self.type = name, ctype
        self.fail, self.permanent, self.block, self.error = fail, permanent, block, error
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self.tries = 0

    def send(self, *, alert: Alert, message: Message, targets: tuple[str, ...], ctx: SendContext,
             progress: Progress) -> None:
        self.tries += 1
        if self.block is not None:
            self.block.wait(ctx.op_timeout())
            raise ChannelError("timed out")
        if self.tries <= self.fail:
            raise ChannelError(self.error, permanent=self.permanent)
        self.sent.append((message.language, targets))
        progress.done.update(targets)


FAST = {"attempts": 3, "backoff_s": 0.01, "max_backoff_s": 0.02, "timeout_s": 0.1, "deadline_s": 5}


def _notifier(tmp_path: Path, **channels: FakeChannel) -> tuple[Notifier, AlertStore, dict[str, FakeChannel]]:
    fakes = {"chat": FakeChannel("chat", "webhook"), "mail": FakeChannel("mail", "smtp"),
             "sms": FakeChannel("sms", "smpp"), **channels}
    store = AlertStore(path=tmp_path / "a.sqlite")
    return Notifier(config=load(doc(retry=FAST), tmp_path), store=store, channels=fakes), store, fakes


def test_fans_out_to_every_route_in_each_audience_language(tmp_path: Path) -> None:
    notifier, store, fakes = _notifier(tmp_path)
    handle = notifier.notify(lyon(kind="incident_opened"))
    assert handle.done()
    assert sorted((o.audience, o.channel, o.state.value) for o in handle.outcomes()) == [
        ("crisis_cell", "chat", "sent"), ("crisis_cell", "mail", "sent"), ("crisis_cell", "sms", "sent"),
        ("partner_operators", "mail", "sent")]
    assert sorted(fakes["mail"].sent) == [("en", ("noc@example.net",)), ("fr", ("crise@example.org",))]
    assert {d.state for d in store.deliveries()} == {NotificationState.SENT}


def test_retries_with_backoff_then_succeeds(tmp_path: Path) -> None:
    notifier, store, fakes = _notifier(tmp_path, mail=FakeChannel("mail", "smtp", fail=2))
    handle = notifier.notify(lyon())
    mail = next(o for o in handle.outcomes() if o.channel == "mail")
    assert (mail.state, mail.attempts, fakes["mail"].tries) == (NotificationState.SENT, 3, 3)
    assert next(d for d in store.deliveries() if d.channel == "mail").attempts == 3


def test_attempts_are_bounded_and_the_delivery_fails(tmp_path: Path) -> None:
    notifier, store, _fakes = _notifier(tmp_path, mail=FakeChannel("mail", "smtp", fail=99))
    handle = notifier.notify(lyon())
    mail = next(o for o in handle.outcomes() if o.channel == "mail")
    assert (mail.state, mail.attempts, mail.error) == (NotificationState.FAILED, 3, "down")
    assert next(d for d in store.deliveries() if d.channel == "mail").state is NotificationState.FAILED


def test_a_permanent_refusal_is_not_retried(tmp_path: Path) -> None:
    notifier, _store, fakes = _notifier(tmp_path, chat=FakeChannel("chat", "webhook", fail=99, permanent=True))
    handle = notifier.notify(lyon())
    assert fakes["chat"].tries == 1
    assert next(o for o in handle.outcomes() if o.channel == "chat").state is NotificationState.FAILED


def test_a_hung_channel_holds_back_neither_the_caller_nor_the_others(tmp_path: Path) -> None:
    never = threading.Event()
    notifier, _store, _fakes = _notifier(tmp_path, sms=FakeChannel("sms", "smpp", block=never))
    t0 = time.monotonic()
    handle = notifier.submit(lyon())
    assert time.monotonic() - t0 < 0.05  # submit() returns at once
    deadline = time.monotonic() + 2
    while len(handle.outcomes()) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    early = {o.channel: o.state for o in handle.outcomes()}
    assert early == {"chat": NotificationState.SENT, "mail": NotificationState.SENT}
    assert not handle.done() and not handle.wait(0.01)  # bounded wait: returns, sms still trying
    assert handle.wait(10)
    sms = next(o for o in handle.outcomes() if o.channel == "sms")
    assert sms.state is NotificationState.FAILED and sms.attempts == 3


def test_close_stops_pending_retries(tmp_path: Path) -> None:
    notifier, _store, fakes = _notifier(tmp_path, mail=FakeChannel("mail", "smtp", fail=99))
    cfg = load(doc(retry={"attempts": 5, "backoff_s": 30, "max_backoff_s": 30, "timeout_s": 1, "deadline_s": 300}),
               tmp_path)
    notifier = Notifier(config=cfg, store=None, channels=fakes)
    handle = notifier.submit(lyon())
    time.sleep(0.05)
    notifier.close()
    assert handle.wait(2)
    mail = next(o for o in handle.outcomes() if o.channel == "mail")
    assert mail.attempts == 1 and "notifier closed" in (mail.error or "")


def test_the_same_key_is_delivered_once_per_window(tmp_path: Path) -> None:
    notifier, _store, fakes = _notifier(tmp_path)
    notifier.notify(lyon())
    second = notifier.notify(lyon())
    assert {o.state for o in second.outcomes()} == {NotificationState.SUPPRESSED}
    assert len(fakes["mail"].sent) == 1
    notifier.notify(lyon(dedupe_key="another-key"))
    assert len(fakes["mail"].sent) == 2


def test_a_failed_delivery_is_retried_by_the_next_occurrence(tmp_path: Path) -> None:
    notifier, _store, _fakes = _notifier(tmp_path, mail=FakeChannel("mail", "smtp", fail=3))
    notifier.notify(lyon())
    again = notifier.notify(lyon())
    states = {o.channel: o.state for o in again.outcomes()}
    assert states == {"chat": NotificationState.SUPPRESSED, "sms": NotificationState.SUPPRESSED,
                      "mail": NotificationState.SENT}


def test_a_broken_store_does_not_stop_alerts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier, store, _fakes = _notifier(tmp_path)
    store.close()
    handle = notifier.notify(lyon())
    assert {o.state for o in handle.outcomes()} == {NotificationState.SENT}
    assert "alert store: record failed" in caplog.text


def test_secret_values_are_scrubbed_from_errors_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    leaky = FakeChannel("mail", "smtp", fail=99, error=f"server said: bad password {ENV['SMTP_PW']}")
    notifier, _store, _fakes = _notifier(tmp_path, mail=leaky)
    handle = notifier.notify(lyon())
    mail = next(o for o in handle.outcomes() if o.channel == "mail")
    assert mail.error == "server said: bad password ***"
    assert ENV["SMTP_PW"] not in caplog.text
    assert ENV["SMTP_PW"].encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("a.sqlite*"))


def test_an_adapter_bug_is_a_failed_delivery_not_a_dead_thread(tmp_path: Path) -> None:
    class Buggy(FakeChannel):
        def send(self, **kwargs: object) -> None:  # type: ignore[override]
            raise KeyError("oops")

    notifier, _store, _fakes = _notifier(tmp_path, chat=Buggy("chat", "webhook"))
    handle = notifier.notify(lyon())
    chat = next(o for o in handle.outcomes() if o.channel == "chat")
    assert chat.state is NotificationState.FAILED and "KeyError" in (chat.error or "")
