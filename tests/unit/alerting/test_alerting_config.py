"""Config: validated once, errors naming file and key, secrets by name only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.alerting import load_config
from orchestrator.alerting.config import store_path
from orchestrator.errors import InvalidInput
from tests.unit.alerting.conftest import ENV, doc, load, lyon

REPO = Path(__file__).resolve().parents[3]


def test_the_shipped_example_loads_and_targets_only_loopback() -> None:
    env = {"CALLFLEET_CHAT_TOKEN": "t", "CALLFLEET_SMTP_PASSWORD": "p", "CALLFLEET_SMPP_PASSWORD": "s"}
    cfg = load_config(REPO / "policies" / "alerts.example.yml", env=env)
    assert set(cfg.audiences) == {"crisis_cell", "authorities", "psaps", "partner_operators", "on_call"}
    for ch in cfg.channels.values():
        target = getattr(ch, "url", None) or ch.host  # type: ignore[union-attr]
        assert "127.0.0.1" in target


def _error(tmp_path: Path, raw: object, env: dict[str, str] | None = None) -> str:
    with pytest.raises(InvalidInput) as exc:
        load(raw, tmp_path, env=env)
    assert str(tmp_path / "alerts.yml") in exc.value.message
    return exc.value.message


@pytest.mark.parametrize(("mutate", "key", "words"), [
    (lambda d: d["channels"]["mail"].update(prot=1), "channels.mail.prot", "unknown key"),
    (lambda d: d["channels"]["mail"].update(port=0), "channels.mail.port", "greater than or equal"),
    (lambda d: d["channels"]["chat"].update(format="discord"), "channels.chat.format", "slack"),
    (lambda d: d["audiences"].update(press={"email": ["a@b.fr"]}), "audiences.press", "crisis_cell"),
    (lambda d: d["audiences"]["crisis_cell"].update(language="de"), "audiences.crisis_cell.language", "fr"),
    (lambda d: d["audiences"]["crisis_cell"].update(webhooks=["nope"]), "audiences.crisis_cell.webhooks.0",
     "no channel named"),
    (lambda d: d["audiences"]["crisis_cell"].update(webhooks=["mail"]), "audiences.crisis_cell.webhooks.0",
     "not a webhook"),
    (lambda d: d["audiences"]["crisis_cell"].update(timezone="Mars/Olympus"), "audiences.crisis_cell.timezone",
     "unknown time zone"),
    (lambda d: d["audiences"]["crisis_cell"].update(sms=["not-a-number"]), "audiences.crisis_cell.sms.0",
     "pattern"),
    (lambda d: d["audiences"].update(on_call={"language": "en"}), "audiences.on_call", "would hear nothing"),
    (lambda d: d["channels"]["sms"].update(receipt_wait_s=5), "channels.sms.receipt_wait_s", "transceiver"),
    (lambda d: d["channels"]["mail"].update(password="hunter2"), "channels.mail.password", "never written"),
    (lambda d: d.update(secrets={"SMTP_PW": "x"}), "secrets", "never written"),
])
def test_errors_name_file_and_key(tmp_path: Path, mutate: object, key: str, words: str) -> None:
    d = doc()
    mutate(d)  # type: ignore[operator]
    message = _error(tmp_path, d)
    assert f": {key}: " in message and words in message, message
    assert "hunter2" not in message


def test_two_smtp_channels_need_a_name(tmp_path: Path) -> None:
    d = doc()
    d["channels"]["mail2"] = dict(d["channels"]["mail"])
    assert "audiences.crisis_cell.email: needs one smtp channel, the file has 2" in _error(tmp_path, d)
    d["audiences"]["crisis_cell"]["email_channel"] = "mail2"
    d["audiences"]["partner_operators"]["email_channel"] = "mail"
    assert load(d, tmp_path).routes(lyon(kind="incident_opened"))[1].channel == "mail2"


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yml"
    path.write_text("channels: [\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"alerts.yml: line \d+: not valid YAML"):
        load_config(path)
    with pytest.raises(InvalidInput, match="no such alerting config file"):
        load_config(tmp_path / "missing.yml")


def test_missing_secret_is_named_with_its_key(tmp_path: Path) -> None:
    message = _error(tmp_path, doc(), env={k: v for k, v in ENV.items() if k != "SMPP_PW"})
    assert "channels.sms.password_secret: secret SMPP_PW is not set in the environment" in message


def test_secrets_file_fills_what_the_environment_lacks(tmp_path: Path) -> None:
    secrets = tmp_path / "alerts.secrets"
    secrets.write_text("# comment\nSMPP_PW = 'from-file'\nSMTP_PW=file-smtp\n", encoding="utf-8")
    secrets.chmod(0o600)
    cfg = load(doc(secrets_file="alerts.secrets"), tmp_path, env={"HOOK_TOKEN": "t", "SMTP_PW": "env-wins"})
    assert cfg.secret("SMPP_PW") == "from-file"
    assert cfg.secret("SMTP_PW") == "env-wins"


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "alerts.secrets"
    secrets.write_text("SMPP_PW=x\n", encoding="utf-8")
    secrets.chmod(0o644)
    with pytest.raises(InvalidInput, match="readable by group or others") as exc:
        load(doc(secrets_file=str(secrets)), tmp_path, env={"HOOK_TOKEN": "t", "SMTP_PW": "p"})
    assert exc.value.hint == f"chmod 600 {secrets}"


def test_a_malformed_secrets_line_is_not_echoed(tmp_path: Path) -> None:
    secrets = tmp_path / "alerts.secrets"
    secrets.write_text("just-the-password-s3cr3t\n", encoding="utf-8")
    secrets.chmod(0o600)
    with pytest.raises(InvalidInput) as exc:
        load(doc(secrets_file=str(secrets)), tmp_path, env={})
    assert "line 1: expected KEY=VALUE" in exc.value.message and "s3cr3t" not in exc.value.message


def test_secrets_stay_out_of_repr_and_dumps(tmp_path: Path) -> None:
    cfg = load(doc(), tmp_path)
    texts = [repr(cfg), str(cfg), cfg.model_dump_json(), json.dumps(cfg.model_dump(), default=str),
             repr(cfg.secrets), str(cfg.secrets)]
    for value in ENV.values():
        assert cfg.secret(next(k for k, v in ENV.items() if v == value)) == value
        for text in texts:
            assert value not in text


def test_relative_paths_are_from_the_config_file(tmp_path: Path) -> None:
    cfg = load(doc(store="state/alerts.sqlite"), tmp_path)
    assert store_path(cfg) == tmp_path / "state" / "alerts.sqlite"


def test_routes_follow_kinds_and_severity(tmp_path: Path) -> None:
    cfg = load(doc(), tmp_path)
    gate = [(r.audience, r.channel) for r in cfg.routes(lyon())]
    assert gate == [("crisis_cell", "chat"), ("crisis_cell", "mail"), ("crisis_cell", "sms")]
    opened = {r.audience for r in cfg.routes(lyon(kind="incident_opened"))}
    assert opened == {"crisis_cell", "partner_operators"}
    assert {r.audience for r in cfg.routes(lyon(kind="incident_opened", severity="warning"))} == {"crisis_cell"}
    # A resolution reaches whoever takes the kind, whatever its severity.
    assert {r.audience for r in cfg.routes(lyon(kind="incident_resolved", severity="info"))} == {
        "crisis_cell", "partner_operators"}
    assert [r.channel for r in cfg.routes(lyon(kind="test", severity="info"), only_channel="mail")] == ["mail", "mail"]
