"""Secrets never reach logs, tracebacks or URLs as syntax, and values a channel cannot carry
are refused at load (issue: safety boundaries, defect 9)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from orchestrator.alerting import Notifier
from orchestrator.alerting.channels.webhook import WebhookSender
from orchestrator.alerting.config import WebhookChannel
from orchestrator.alerting.secrets import resolve_secrets
from orchestrator.errors import InvalidInput
from tests.unit.alerting.conftest import ENV, doc, load, lyon
from tests.unit.alerting.test_alerting_dispatcher import FAST, FakeChannel


def test_a_token_in_the_url_is_percent_encoded_never_url_syntax() -> None:
    settings = WebhookChannel.model_validate({"type": "webhook", "url": "http://127.0.0.1:9/hook/{token}",
                                              "format": "json", "token_secret": "T"})
    request = WebhookSender(name="chat", settings=settings, token="a b/c?d#e")._request(b"{}")
    assert request.full_url == "http://127.0.0.1:9/hook/a%20b%2Fc%3Fd%23e"


def test_a_traceback_logged_by_the_notifier_holds_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = ENV["HOOK_TOKEN"]

    class Leaky(FakeChannel):
        def send(self, **kwargs: object) -> None:  # type: ignore[override]
            raise RuntimeError(f"bad request to http://127.0.0.1:9/hook/{token} with {token}")

    fakes = {"chat": Leaky("chat", "webhook"), "mail": FakeChannel("mail", "smtp"), "sms": FakeChannel("sms", "smpp")}
    notifier = Notifier(config=load(doc(retry=FAST), tmp_path), store=None, channels=fakes)
    with caplog.at_level(logging.DEBUG, logger="orchestrator.alerting"):
        notifier.notify(lyon())
    handler = logging.StreamHandler()
    text = "\n".join(handler.format(r) for r in caplog.records)
    assert "Traceback" in text and "RuntimeError" in text  # the traceback is kept...
    assert token not in text  # ...without the secret
    notifier.close()


@pytest.mark.parametrize(("channel", "value", "words"), [
    ("mail", "pässwörd", "ASCII passwords only"),
    ("chat", "tökén-€", "HTTP header"),
    ("chat", "line\r\nX-Injected: 1", "control character"),
])
def test_values_a_channel_cannot_carry_are_refused_at_load_by_name(tmp_path: Path, channel: str, value: str,
                                                                   words: str) -> None:
    name = "SMTP_PW" if channel == "mail" else "HOOK_TOKEN"
    d = doc()
    d["channels"]["chat"]["token_header"] = "X-Token"
    with pytest.raises(InvalidInput) as err:
        load(d, tmp_path, env={**ENV, name: value})
    assert words in err.value.message and value not in err.value.message
    assert f"channels.{channel}." in err.value.message


def _secrets_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "alerts.secrets"
    path.write_text("HOOK_TOKEN=from-file\n")
    path.chmod(mode)
    return path


def test_a_readable_secrets_file_is_refused_even_when_the_environment_has_every_secret(tmp_path: Path) -> None:
    path = _secrets_file(tmp_path, 0o644)
    with pytest.raises(InvalidInput, match="readable by group or others"):
        resolve_secrets(names=["HOOK_TOKEN"], env={"HOOK_TOKEN": "x"}, secrets_file=path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (CI runs as root)")
def test_a_secrets_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = _secrets_file(tmp_path, 0o600)
    os.chown(path, 12345, -1)
    with pytest.raises(InvalidInput, match="belongs to uid 12345"):
        resolve_secrets(names=["HOOK_TOKEN"], env={}, secrets_file=path)
