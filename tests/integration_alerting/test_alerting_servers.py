"""Alerts through real servers on loopback: HTTP receiver, aiosmtpd, an SMPP SMSC.

Everything is checked on the server side: what the receiver got, what the SMTP server
stored, what the SMSC decoded and reassembled."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import ssl
import time
from pathlib import Path

import pytest

from orchestrator.alerting import NotificationState, Notifier
from orchestrator.alerting.channels.base import Progress, SendContext
from orchestrator.alerting.channels.smpp import SmppSender
from orchestrator.alerting.channels.sms_encoding import GSM, UCS2, UDHI, reassemble
from orchestrator.alerting.config import SmppChannel
from orchestrator.alerting.secrets import Redactor
from orchestrator.alerting.store import AlertStore
from orchestrator.alerting.templates import render
from tests.integration_alerting.conftest import (
    SECRETS,
    SMPP_PASSWORD,
    SMTP_PASSWORD,
    WEBHOOK_TOKEN,
    config_doc,
    lyon_alert,
    make_config,
)
from tests.integration_alerting.servers import HOST, BlackHole, HttpReceiver, SmppServer, SmtpServer, self_signed

OK = (NotificationState.SENT, NotificationState.ACKNOWLEDGED)


def _texts(smsc: SmppServer) -> dict[str, str]:
    """Reassembled text per destination, from what the SMSC received."""
    by_dest: dict[str, list[tuple[int, int, bytes]]] = {}
    for s in smsc.state.submits:
        by_dest.setdefault(s.destination, []).append((s.esm_class, s.data_coding, s.short_message))
    out = {}
    for dest, parts in by_dest.items():
        texts = reassemble(parts)
        assert len(texts) == 1, texts
        out[dest] = next(iter(texts.values()))
    return out


def test_an_alert_reaches_all_three_channels_with_the_facts(tmp_path: Path, http: HttpReceiver, smtp: SmtpServer,
                                                            smsc: SmppServer) -> None:
    cfg = make_config(tmp_path, config_doc(http_port=http.port, smtp_port=smtp.port, smpp_port=smsc.port,
                                           store=tmp_path / "alerts.sqlite"))
    store = AlertStore(path=tmp_path / "alerts.sqlite")
    handle = Notifier(config=cfg, store=store).submit(lyon_alert())
    assert handle.wait(10)
    assert {(o.channel, o.state) for o in handle.outcomes()} == {
        ("ops-chat", NotificationState.SENT), ("mail", NotificationState.SENT), ("sms", NotificationState.SENT)}

    # Webhook: Slack text + blocks, token in the Authorization header.
    [hit] = http.hits
    assert hit.path == "/hooks/ops"
    assert hit.headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    assert {"text", "blocks"} <= hit.body.keys()
    blob = json.dumps(hit.body, ensure_ascii=False)
    for fact in ("112, 18", "lyon", "14:45 UTC", "5.8.1 -> 5.8.2", "site drainé", "04 72 00 00 00", "CRITIQUE"):
        assert fact in blob, fact

    # E-mail: authenticated, French long form with every fact.
    assert smtp.logins == [("callfleet", SMTP_PASSWORD, False)]
    [(rcpts, msg, _)] = smtp.messages
    assert rcpts == ["crise@example.org"]
    assert msg["X-Callfleet-Incident"] == "lyon/112+18"
    assert "Vérification de santé en échec" in msg["Subject"]
    body = msg.get_content()
    for fact in ("Ce qui échoue : Appels vers le 112, 18 sur lyon", "Depuis : 2021-06-02 14:45 UTC",
                 "Version : 5.8.1 -> 5.8.2", "retour à la version précédente",
                 "Numéros de substitution à publier : 04 72 00 00 00", "ser_112: 0.62"):
        assert fact in body, fact

    # SMS: bound as transmitter with the password, receipts requested, same text to both numbers.
    assert smsc.state.binds[0] == ("bind_transmitter", "callfleet", SMPP_PASSWORD)
    assert all(s.registered_delivery == 1 for s in smsc.state.submits)
    texts = _texts(smsc)
    assert set(texts) == {"33600000001", "33600000002"}
    sms = texts["33600000001"]
    assert sms == texts["33600000002"]
    for fact in ("112, 18 sur lyon", "14:45 UTC", "5.8.1 -> 5.8.2", "site drainé", "04 72 00 00 00"):
        assert fact in sms, fact

    # The store says so too.
    states = {d.channel: d.state for d in store.deliveries(incident_id="lyon/112+18")}
    assert states == {"ops-chat": NotificationState.SENT, "mail": NotificationState.SENT,
                      "sms": NotificationState.SENT}


LONG_FR = ("Les appels d'urgence vers le 112 échouent à Lyon depuis 14h45 ; numéro de substitution à publier : "
           "04 72 00 00 00. Le site a été drainé et ramené à la version précédente ; la cellule de crise est "
           "prévenue, ça reste à confirmer sur les autres sites.")
LONG_GSM = ("Emergency calls to 112 fail at Lyon since 14:45 UTC; substitute number to publish: 04 72 00 00 00. "
            "The site was drained and rolled back to release 5.8.1; the crisis cell is informed; other sites are "
            "being checked now (10 EUR = 10 €).")


def _send_sms(smsc: SmppServer, text: str, *, bind: str = "transmitter", wait: float = 0.0) -> Progress:
    settings = SmppChannel(type="smpp", host=HOST, port=smsc.port, system_id="callfleet", source_addr="CALLFLEET",
                           throughput=500, bind=bind, receipt_wait_s=wait)  # type: ignore[arg-type]
    sender = SmppSender(name="sms", settings=settings, password=SMPP_PASSWORD, redactor=Redactor(secrets=[]))
    alert = lyon_alert()
    message = render(alert=alert, language="fr")
    message = type(message)(**{**message.__dict__, "sms": text})
    progress = Progress()
    sender.send(alert=alert, message=message, targets=("+33600000001",),
                ctx=SendContext(timeout=2, deadline=time.monotonic() + 5), progress=progress)
    return progress


def test_a_long_french_sms_with_accents_is_split_in_ucs2_and_reassembles(smsc: SmppServer) -> None:
    assert len(LONG_FR) > 160
    _send_sms(smsc, LONG_FR)
    submits = smsc.state.submits
    assert len(submits) == -(-len(LONG_FR) // 67)  # 67 UCS-2 characters a part
    for i, s in enumerate(submits, start=1):
        assert s.data_coding == UCS2 == 8
        assert s.esm_class & UDHI
        udh = s.short_message[:6]
        assert udh[:3] == b"\x05\x00\x03" and udh[4] == len(submits) and udh[5] == i
        assert len(s.short_message) <= 140
    assert _texts(smsc) == {"33600000001": LONG_FR}


def test_a_long_gsm_only_text_uses_gsm_7bit(smsc: SmppServer) -> None:
    assert len(LONG_GSM) > 160
    _send_sms(smsc, LONG_GSM)
    submits = smsc.state.submits
    assert len(submits) == 2  # 153 septets a part: the € (an escape, 2 septets) included
    assert all(s.data_coding == GSM == 0 and s.esm_class & UDHI for s in submits)
    assert _texts(smsc) == {"33600000001": LONG_GSM}


def test_french_template_text_stays_in_gsm(tmp_path: Path, http: HttpReceiver, smtp: SmtpServer,
                                           smsc: SmppServer) -> None:
    """The built-in French SMS (é, à) is GSM 03.38: 153 characters a part, not 67."""
    sms = render(alert=lyon_alert(), language="fr").sms
    _send_sms(smsc, sms)
    assert {s.data_coding for s in smsc.state.submits} == {GSM}
    assert _texts(smsc) == {"33600000001": sms}


def test_transceiver_collects_delivery_receipts_and_acknowledges(smsc: SmppServer) -> None:
    progress = _send_sms(smsc, LONG_FR, bind="transceiver", wait=3)
    assert smsc.state.binds[0][0] == "bind_transceiver"
    assert progress.acknowledged
    assert progress.detail["receipts_delivered"] == smsc.state.receipts_sent == len(smsc.state.submits)


def test_throttled_submits_are_retried_and_paced(tmp_path: Path) -> None:
    smsc = SmppServer(password=SMPP_PASSWORD, throttle_first=2)
    try:
        settings = SmppChannel(type="smpp", host=HOST, port=smsc.port, system_id="callfleet",
                               source_addr="CALLFLEET", throughput=20, max_retries=3)  # type: ignore[arg-type]
        sender = SmppSender(name="sms", settings=settings, password=SMPP_PASSWORD, redactor=Redactor(secrets=[]))
        alert = lyon_alert()
        progress = Progress()
        sender.send(alert=alert, message=render(alert=alert, language="fr"), targets=("+33600000001", "+33600000002"),
                    ctx=SendContext(timeout=2, deadline=time.monotonic() + 10), progress=progress)
    finally:
        smsc.close()
    assert smsc.throttled == 2
    assert progress.done == {"+33600000001", "+33600000002"}
    times = [s.at for s in smsc.state.submits]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= 1 / 20 * 0.8  # never faster than the SMSC's 20/s


def test_rejected_numbers_are_recorded_and_others_delivered(tmp_path: Path, http: HttpReceiver,
                                                            smtp: SmtpServer) -> None:
    smsc = SmppServer(password=SMPP_PASSWORD, reject={"33600000002"})
    try:
        cfg = make_config(tmp_path, config_doc(http_port=http.port, smtp_port=smtp.port, smpp_port=smsc.port,
                                               store=tmp_path / "s.sqlite"))
        store = AlertStore(path=tmp_path / "s.sqlite")
        handle = Notifier(config=cfg, store=store).submit(lyon_alert(), only_channel="sms")
        assert handle.wait(10)
    finally:
        smsc.close()
    [out] = handle.outcomes()
    assert out.state is NotificationState.SENT and out.attempts == 1
    [rec] = store.deliveries()
    assert rec.detail["rejected"] == {"+33600000002": "invalid destination"}
    assert {s.destination for s in smsc.state.submits} == {"33600000001"}


@pytest.mark.parametrize("dead", ["refused", "hung"])
def test_a_dead_channel_is_retried_marked_failed_and_delays_no_one(tmp_path: Path, http: HttpReceiver,
                                                                   smsc: SmppServer, blackhole: BlackHole,
                                                                   dead: str) -> None:
    """SMTP down (nothing listening, or a relay that never answers): retried up to the
    policy, marked failed; the webhook and the SMS arrive at their own pace, and
    submit() returns at once (a rollback never waits on alerts)."""
    from tests.integration_alerting.servers import free_port
    smtp_port = free_port() if dead == "refused" else blackhole.port
    mail_retry = {"attempts": 3, "backoff_s": 0.1, "max_backoff_s": 0.2, "timeout_s": 0.5, "deadline_s": 5}
    doc = config_doc(http_port=http.port, smtp_port=smtp_port, smpp_port=smsc.port, store=tmp_path / "s.sqlite")
    doc["channels"]["mail"]["retry"] = mail_retry
    cfg = make_config(tmp_path, doc)
    store = AlertStore(path=tmp_path / "s.sqlite")
    t0 = time.monotonic()
    handle = Notifier(config=cfg, store=store).submit(lyon_alert())
    submit_s = time.monotonic() - t0
    assert submit_s < 0.1, f"submit() blocked {submit_s:.3f}s"
    assert handle.wait(10)
    total_s = time.monotonic() - t0
    by_channel = {o.channel: o for o in handle.outcomes()}
    mail = by_channel["mail"]
    assert mail.state is NotificationState.FAILED and mail.attempts == 3
    assert mail.error and f"{HOST}:{smtp_port}" in mail.error
    for name in ("ops-chat", "sms"):
        assert by_channel[name].state is NotificationState.SENT
        # Delivered well before the dead channel gave up, and fast in absolute terms.
        assert by_channel[name].elapsed_s < 1.0, (name, by_channel[name].elapsed_s)
    # The receivers saw the others long before the dead channel gave up.
    first_delivery = min(http.hits[0].at, smsc.state.submits[-1].at) - t0
    assert first_delivery < 1.0
    if dead == "hung":
        assert mail.elapsed_s >= 3 * 0.5  # three tries, each waited its whole timeout
    assert total_s >= mail.elapsed_s
    assert {d.channel: d.state for d in store.deliveries()}["mail"] is NotificationState.FAILED


def test_a_webhook_5xx_is_retried_then_delivered(tmp_path: Path, smtp: SmtpServer, smsc: SmppServer) -> None:
    http = HttpReceiver(statuses=[503, 502])
    try:
        cfg = make_config(tmp_path, config_doc(http_port=http.port, smtp_port=smtp.port, smpp_port=smsc.port,
                                               store=tmp_path / "s.sqlite"))
        handle = Notifier(config=cfg, store=None).submit(lyon_alert(), only_channel="ops-chat")
        assert handle.wait(10)
    finally:
        http.close()
    [out] = handle.outcomes()
    assert out.state is NotificationState.SENT and out.attempts == 3
    assert len(http.hits) == 3


def test_the_same_key_twice_within_the_window_is_sent_once(tmp_path: Path, http: HttpReceiver, smtp: SmtpServer,
                                                           smsc: SmppServer) -> None:
    cfg = make_config(tmp_path, config_doc(http_port=http.port, smtp_port=smtp.port, smpp_port=smsc.port,
                                           store=tmp_path / "s.sqlite"))
    store = AlertStore(path=tmp_path / "s.sqlite")
    notifier = Notifier(config=cfg, store=store)
    assert notifier.submit(lyon_alert()).wait(10)
    sms_parts = len(smsc.state.submits)
    again = notifier.submit(lyon_alert(evidence={"ser_112": 0.5}))
    assert again.wait(10)
    assert {o.state for o in again.outcomes()} == {NotificationState.SUPPRESSED}
    assert len(http.hits) == 1 and len(smtp.messages) == 1
    assert len(smsc.state.submits) == sms_parts
    states = [d.state for d in store.deliveries()]
    assert states.count(NotificationState.SENT) == 3 and states.count(NotificationState.SUPPRESSED) == 3
    # Another kind of the same incident is news: it goes out.
    assert notifier.submit(lyon_alert(kind="incident_resolved", severity="info", actions=[])).wait(10)
    assert len(http.hits) == 2


def test_secrets_never_reach_logs_store_repr_or_json(tmp_path: Path, http: HttpReceiver, smtp: SmtpServer,
                                                     smsc: SmppServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("orchestrator", "smpp", "orchestrator.alerting.smpp.wire"):
        caplog.set_level(logging.DEBUG, logger=name)
    # A secrets file for two of them, the environment for the third: both paths covered.
    secrets_file = tmp_path / "alerts.secrets"
    secrets_file.write_text(f"T_SMTP_PASSWORD={SMTP_PASSWORD}\nT_SMPP_PASSWORD='{SMPP_PASSWORD}'\n")
    secrets_file.chmod(0o600)
    doc = config_doc(http_port=http.port, smtp_port=smtp.port, smpp_port=smsc.port, store=tmp_path / "s.sqlite",
                     secrets_file=str(secrets_file))
    cfg = make_config(tmp_path, doc, env={"T_HOOK_TOKEN": WEBHOOK_TOKEN})
    store = AlertStore(path=tmp_path / "s.sqlite")
    notifier = Notifier(config=cfg, store=store)
    assert {o.state for o in notifier.notify(lyon_alert()).outcomes()} <= set(OK)
    # And a failure whose error text could carry a secret: the receiver rejects the token.
    http.statuses = [401]
    failed = notifier.notify(lyon_alert(dedupe_key="k3"))
    assert any(o.state is NotificationState.FAILED for o in failed.outcomes())
    store.close()

    # The servers did receive the secrets: they were used, not lost.
    assert (SMTP_PASSWORD in [p for _u, p, _tls in smtp.logins]) and smsc.state.binds[0][2] == SMPP_PASSWORD
    assert http.hits[0].headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"

    ours = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("mail.log"))
    # Logging did happen, smpplib's own DEBUG lines included (its hex PDU dumps are dropped).
    assert "Sending bind_transmitter PDU" in ours and "orchestrator.alerting " in ours
    dumps = [repr(cfg), str(cfg), cfg.model_dump_json(), json.dumps(cfg.model_dump(), default=str),
             json.dumps(cfg.model_dump(mode="json")), repr(cfg.secrets)]
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("s.sqlite*"))
    for secret in SECRETS.values():
        assert secret not in ours
        assert secret.encode().hex() not in ours  # smpplib's hex wire dumps are dropped
        for text in dumps:
            assert secret not in text
        assert secret.encode() not in db_bytes


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a certificate")
def test_starttls_is_used_when_asked_and_the_certificate_checked(tmp_path: Path, http: HttpReceiver,
                                                                 smsc: SmppServer) -> None:
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    smtp = SmtpServer(user="callfleet", password=SMTP_PASSWORD, tls=ctx)
    try:
        doc = config_doc(http_port=http.port, smtp_port=smtp.port, smpp_port=smsc.port, store=tmp_path / "s.sqlite")
        doc["channels"]["mail"].update(starttls=True, ca_file=str(cert))
        handle = Notifier(config=make_config(tmp_path, doc), store=None).submit(lyon_alert(), only_channel="mail")
        assert handle.wait(10)
        assert [o.state for o in handle.outcomes()] == [NotificationState.SENT]
        assert smtp.logins == [("callfleet", SMTP_PASSWORD, True)]  # logged in only once encrypted
        assert len(smtp.messages) == 1

        # A certificate the client cannot verify is a permanent failure: no retry.
        doc["channels"]["mail"].pop("ca_file")
        (tmp_path / "alerts.yml").unlink()
        handle = Notifier(config=make_config(tmp_path, doc), store=None).submit(lyon_alert(), only_channel="mail")
        assert handle.wait(10)
        [out] = handle.outcomes()
        assert out.state is NotificationState.FAILED and out.attempts == 1 and "TLS" in (out.error or "")
    finally:
        smtp.close()
