"""`alert test` and `incidents` as a user runs them, against a loopback HTTP receiver."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from orchestrator.cli import alert_cmd
from orchestrator.schemas import validate
from tests.integration_alerting.conftest import SECRETS, config_doc
from tests.integration_alerting.servers import HttpReceiver, free_port

# The CLI as main.py registers it: `alert` sub-app and `incidents` command.
cli = typer.Typer()
cli.add_typer(alert_cmd.app, name="alert")
cli.command("incidents")(alert_cmd.incidents)
runner = CliRunner()


def _config(tmp_path: Path, http_port: int) -> Path:
    doc = config_doc(http_port=http_port, smtp_port=free_port(), smpp_port=free_port(), store=tmp_path / "s.sqlite")
    doc["retry"] = {"attempts": 2, "backoff_s": 0.05, "max_backoff_s": 0.1, "timeout_s": 0.5, "deadline_s": 2}
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_alert_test_sends_and_incidents_lists_it(tmp_path: Path, http: HttpReceiver) -> None:
    cfg = _config(tmp_path, http.port)
    res = runner.invoke(cli, ["alert", "test", "--channel", "ops-chat", "--config", str(cfg), "--json"], env=SECRETS)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    validate("alert-test", out)
    assert out["ok"] and out["deliveries"][0]["state"] == "sent"
    [hit] = http.hits
    assert "Test d'alerte" in hit.body["text"]

    res = runner.invoke(cli, ["incidents", "--config", str(cfg), "--json"], env={})  # no secret needed to list
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    validate("incidents", listed)
    [incident] = listed["incidents"]
    assert incident["incident_id"] == "test"
    assert [n["state"] for n in incident["notifications"]] == ["sent"]

    human = runner.invoke(cli, ["incidents", "--store", str(tmp_path / "s.sqlite")])
    assert human.exit_code == 0 and "crisis_cell" in human.stdout and "sent" in human.stdout


def test_alert_test_on_a_dead_channel_exits_4(tmp_path: Path, http: HttpReceiver) -> None:
    cfg = _config(tmp_path, http.port)
    res = runner.invoke(cli, ["alert", "test", "--channel", "mail", "--config", str(cfg)], env=SECRETS)
    assert res.exit_code == 4, res.output
    assert "failed" in res.output and "Traceback" not in res.output


def test_alert_test_input_errors_exit_2(tmp_path: Path, http: HttpReceiver) -> None:
    cfg = _config(tmp_path, http.port)
    res = runner.invoke(cli, ["alert", "test", "--channel", "nope", "--config", str(cfg)], env=SECRETS)
    assert res.exit_code == 2 and "no channel 'nope'" in res.output
    res = runner.invoke(cli, ["alert", "test", "--channel", "mail", "--config", str(cfg)], env={})
    assert res.exit_code == 2 and "T_HOOK_TOKEN is not set" in res.output
    res = runner.invoke(cli, ["alert", "test", "--channel", "mail", "--config", str(tmp_path / "x.yml")])
    assert res.exit_code == 2 and "no such alerting config file" in res.output


def test_incidents_on_an_empty_store(tmp_path: Path) -> None:
    res = runner.invoke(cli, ["incidents", "--store", str(tmp_path / "none.sqlite"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["incidents"] == []
    assert not (tmp_path / "none.sqlite").exists()
