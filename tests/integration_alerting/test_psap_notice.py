"""PSAP notices end to end on loopback: the supervisor (fake probes, injected clock) with the
real notifier and alert store sends the initial, follow-up and closing notices to a webhook
receiver on 127.0.0.1 (the `psaps` audience only), with the content a regulator expects; then
`incidents show` displays the clock, as text and as its JSON document."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from orchestrator.alerting import AlertStore, Notifier, load_config
from orchestrator.alerting.psap import PsapDeadlines
from orchestrator.cli.main import app
from orchestrator.schemas import validate
from orchestrator.watch.journal import WatchJournal
from orchestrator.watch.ports import Ports
from orchestrator.watch.supervisor import Supervisor
from tests.integration_alerting.servers import HttpReceiver
from tests.unit.watch.helpers import NUMBERS, SITES
from tests.unit.watch.test_supervisor import FAST, Clock, FakeLive, FakeProber, FakeSteering

POLICY = FAST.model_copy(update={"psap_notice": PsapDeadlines(initial_s=30, follow_up_s=60, follow_up_lead_s=10),
                                 "substitute_numbers": ("0472000000",)})


def _config(tmp_path: Path, http: HttpReceiver, *, psap: dict[str, object] | None) -> Path:
    doc: dict[str, object] = {
        "version": 1, "store": str(tmp_path / "alerts.sqlite"),
        "retry": {"attempts": 2, "backoff_s": 0.05, "max_backoff_s": 0.1, "timeout_s": 2, "deadline_s": 5},
        "channels": {"psap-hook": {"type": "webhook", "url": http.url("/psaps"), "format": "json"},
                     "ops-hook": {"type": "webhook", "url": http.url("/ops"), "format": "json"}},
        "audiences": {"psaps": {"language": "en", "webhooks": ["psap-hook"], "kinds": ["psap_notice"]},
                      "on_call": {"language": "en", "webhooks": ["ops-hook"]}},
    }
    if psap is not None:
        doc["psap"] = psap
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _watch(tmp_path: Path, cfg: Path, *, rounds: int) -> None:
    config = load_config(cfg)
    store = AlertStore(path=tmp_path / "alerts.sqlite")
    clock = Clock()
    ports = Ports(prober=FakeProber(clock, {"site3": range(3, 13)}), live=FakeLive(), steering=FakeSteering(),
                  releases=lambda: (dict.fromkeys(SITES, "5.8.1"), None),
                  alerts=Notifier(config=config, store=store), psap=store)
    Supervisor(sites=SITES, numbers=NUMBERS, policy=POLICY, ports=ports,
               journal=WatchJournal(tmp_path / "watch.sqlite", clock=clock.now), clock=clock.now,
               monotonic=clock.mono, wait=clock.wait).run(rounds=rounds)
    store.close()


def test_the_psaps_receive_initial_follow_up_and_closing_with_the_regulators_content(
        tmp_path: Path, http: HttpReceiver) -> None:
    cfg = _config(tmp_path, http, psap={"provider": "Opérateur Test", "contact": "NOC +33 1 00 00 00 00",
                                        "areas": {"site3": "Rhône (69)"}})
    _watch(tmp_path, cfg, rounds=18)
    to_psaps = [h.body for h in http.hits if h.path == "/psaps"]
    to_ops = [h.body for h in http.hits if h.path == "/ops"]
    assert [b["alert"]["psap"]["notice"] for b in to_psaps] == ["initial", "follow_up", "closing"]
    assert all(b["alert"]["kind"] == "psap_notice" for b in to_psaps)
    assert not any(b["alert"]["kind"] == "psap_notice" for b in to_ops)  # on_call hears incidents, not notices
    assert [b["alert"]["kind"] for b in to_ops] == ["incident_opened", "incident_resolved"]
    initial, follow_up, closing = (b["text"] for b in to_psaps)
    for text in (initial, follow_up, closing):
        assert "Provider: Opérateur Test" in text and "Contact: NOC +33 1 00 00 00 00" in text
        assert "Area: Rhône (69)" in text and "Calls to 15, 17, 18, 112 at site3" in text
        assert "Substitute numbers: 04 72 00 00 00" in text
    assert "Initial outage notice" in initial and "next notice by" in initial
    assert "Follow-up outage notice" in follow_up and "not yet known" in follow_up
    assert "Outage ended notice" in closing and "service restored at" in closing
    assert "LATE" not in initial + follow_up

    incident = to_psaps[0]["alert"]["incident_id"]
    runner = CliRunner()
    res = runner.invoke(app, ["incidents", "show", incident, "--config", str(cfg), "--json"], env={})
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    validate("incident-show", doc)
    clock = doc["psap_clock"]
    assert clock["site"] == "site3" and clock["closed_at"] is not None
    assert [(n["notice"], n["on_time"], [d["state"] for d in n["deliveries"]]) for n in clock["notices"]] == [
        ("initial", True, ["sent"]), ("follow_up", True, ["sent"]), ("closing", None, ["sent"])]
    human = runner.invoke(app, ["incidents", "show", incident, "--store", str(tmp_path / "alerts.sqlite")])
    assert human.exit_code == 0, human.output
    for word in ("PSAP clock", "opened", "initial notice", "follow-up", "closing notice", "closed", "on time",
                 "psap-hook sent"):
        assert word in human.stdout, word
    # the bare `incidents` still lists, and the incident reads as resolved despite the closing notice after it
    listed = runner.invoke(app, ["incidents", "--store", str(tmp_path / "alerts.sqlite"), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["incidents"][0]["resolved"] is True


def test_without_provider_contact_or_area_the_notice_says_so(tmp_path: Path, http: HttpReceiver) -> None:
    cfg = _config(tmp_path, http, psap=None)
    _watch(tmp_path, cfg, rounds=5)
    [initial] = [h.body["text"] for h in http.hits if h.path == "/psaps"]
    assert "provider not set" in initial and "no contact configured" in initial
    assert "area served by site3 not set" in initial
    res = CliRunner().invoke(app, ["incidents", "show", "nope", "--config", str(cfg)], env={})
    assert res.exit_code == 2 and "no incident 'nope'" in res.output
