"""#19 acceptance, PSAP notification on the clock: on the lab, site3 fails every call for 60 s
(Kamailio stopped on both its hosts) while the public calls; `callfleet watch` (a real
subprocess, 2 s rounds, lab-scale deadlines: initial 20 s, follow-up 40 s sent 8 s ahead) must
deliver to the PSAP test receiver (a webhook on 127.0.0.1) the initial notice before its
deadline, the follow-up at the second deadline (within its lead, never after it), and the
closing notice at the resolution; `incidents show` then displays the clock, every notice on
time. The on-call audience hears the incident, never the PSAP notices. The same incident's
failed-callers list (`incidents callers`, collected from the edge) holds within 60 s of the
opening every call that failed before it, and in the end exactly the calls the background
caller itself logged as failed, with their callers and numbers (collected by rounds run after the
caller stopped: its last calls may fail after the resolution).
Whatever happens, the lab is left as it was found (both hosts running, no site drained).

Run it alone: .venv/bin/pytest -m lab tests/lab/test_watch_psap.py -s
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.watch.journal import WatchJournal
from tests.conftest import cli
from tests.integration_alerting.servers import HttpHit, HttpReceiver
from tests.lab.conftest import Lab, host_service, put_back
from tests.lab.test_watch import SITE, WATCH, _eventually, watching

OUTAGE_S = 60.0
PSAP = {"initial_s": 20, "follow_up_s": 40, "follow_up_lead_s": 8}
POLICY = {**WATCH, "max_drained": 1, "psap_notice": PSAP}


def _hosts(lab: Lab) -> list[str]:
    return [h.name for h in lab.estate.site(SITE).hosts]


@pytest.fixture()
def restore(lab: Lab) -> Iterator[None]:
    """Put the lab back whatever happened: site3's hosts running, no site drained, no caller."""
    yield
    put_back(lab, _hosts(lab))


def _files(tmp_path: Path, receiver: HttpReceiver) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yml"
    policy.write_text(yaml.safe_dump({"name": "watch-psap-lab", "watch": POLICY}))
    alerts = tmp_path / "alerts.yml"
    alerts.write_text(yaml.safe_dump({
        "version": 1, "store": str(tmp_path / "alerts.sqlite"), "dedupe_window_s": 600,
        "retry": {"attempts": 3, "backoff_s": 0.1, "max_backoff_s": 0.5, "timeout_s": 2, "deadline_s": 8},
        "channels": {"ops": {"type": "webhook", "url": receiver.url("/hooks/ops"), "format": "json"},
                     "psap-test": {"type": "webhook", "url": receiver.url("/hooks/psaps"), "format": "json"}},
        "audiences": {"on_call": {"language": "en", "webhooks": ["ops"]},
                      "psaps": {"language": "fr", "timezone": "Europe/Paris", "webhooks": ["psap-test"],
                                "kinds": ["psap_notice"]}},
        "psap": {"provider": "callfleet lab operator", "contact": "lab NOC, +33 1 00 00 00 00",
                 "areas": {SITE: "lab area 3"}},
    }))
    return policy, alerts


class Wall:
    """Receiver arrival times (monotonic) on the wall clock the notices' deadlines use."""

    def __init__(self) -> None:
        self.mono0, self.wall0 = time.monotonic(), time.time()

    def of(self, hit: HttpHit) -> float:
        return self.wall0 + (hit.at - self.mono0)


def _notice(receiver: HttpReceiver, kind: str) -> tuple[HttpHit, dict[str, Any]] | None:
    for hit in list(receiver.hits):
        alert = hit.body["alert"]
        if hit.path == "/hooks/psaps" and alert["psap"] and alert["psap"]["notice"] == kind \
                and SITE in alert["failing"]["sites"]:
            return hit, dict(alert)
    return None


def _callers(journal: Path, incident: str, before: str) -> list[dict[str, Any]]:
    out = cli("incidents", "callers", incident, "--journal", str(journal), "--before", before, "--json")
    assert out.returncode == 0, out.stderr
    calls: list[dict[str, Any]] = json.loads(out.stdout)["calls"]
    return calls


def _logged_failures(run_dir: Path) -> dict[str, tuple[str, str]]:
    """The background caller's own record: Call-ID -> (caller, number) of each failed call."""
    found: dict[str, tuple[str, str]] = {}
    for log in run_dir.glob("*_logs.log"):
        for line in log.read_text(errors="replace").splitlines():
            parts = line[line.find("FAILED;"):].split(";") if "FAILED;" in line else []
            if len(parts) >= 5:
                found[parts[3].strip()] = (parts[4].strip(), parts[1].strip())
    return found


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_psap_notices_initial_before_deadline_follow_up_at_the_second_closing_at_resolution(
        lab: Lab, tmp_path: Path, receiver: HttpReceiver, restore: None) -> None:
    policy, alerts = _files(tmp_path, receiver)
    journal = tmp_path / "watch.sqlite"
    wall = Wall()
    watch = watching(lab, ["--policy", str(policy), "--alerts", str(alerts), "--journal", str(journal),
                           "-i", str(lab.inventory), "--rounds", "100", "--duration", "150"], caller_s=300)
    try:
        t_break = time.time()
        for host in _hosts(lab):  # the whole site fails every call
            host_service(lab, host, "stop")
        t_open, _ = _eventually(lambda: watch.event("incident_opened"), timeout=30, what="incident opened")

        hit, initial = _eventually(lambda: _notice(receiver, "initial"), timeout=PSAP["initial_s"] + 5,
                                   what="initial PSAP notice")
        discovered = _ts(initial["psap"]["discovered_at"])
        assert abs(discovered - t_open) < WATCH["interval_s"] + 3, (discovered, t_open)
        assert _ts(initial["psap"]["due_by"]) == pytest.approx(discovered + PSAP["initial_s"], abs=0.01)
        assert wall.of(hit) <= discovered + PSAP["initial_s"], "the initial notice arrived after its deadline"
        assert not initial["psap"]["late"] and initial["severity"] == "critical"
        assert initial["substitute_numbers"] == ["0472000000"] and initial["failing"]["numbers"]
        text = hit.body["text"]
        assert "callfleet lab operator" in text and "lab NOC" in text and "lab area 3" in text

        hit, follow_up = _eventually(lambda: _notice(receiver, "follow_up"), timeout=PSAP["follow_up_s"] + 5,
                                     what="follow-up PSAP notice")
        due = discovered + PSAP["follow_up_s"]
        arrived = wall.of(hit)
        # at the second deadline: within its lead (and one round's probing) before it, never after
        assert due - PSAP["follow_up_lead_s"] - 1 <= arrived <= due, (arrived - due)
        assert not follow_up["psap"]["late"]
        assert time.time() - t_break < OUTAGE_S, "the follow-up must come while the outage lasts"

        # within 60 s of the opening, the list holds the calls that failed up to the opening
        # from the break (1 s early: the edge stamps whole seconds); failures before it are other tests'
        before = str(t_open - t_break + 1)
        early = _callers(journal, initial["incident_id"], before)
        assert time.time() - t_open <= 60
        time.sleep(max(0.0, t_break + OUTAGE_S - time.time()))
        for host in _hosts(lab):
            host_service(lab, host, "start")
        t_resolved, _ = _eventually(lambda: watch.event("incident_resolved"), timeout=40, what="incident resolved")
        hit, closing = _eventually(lambda: _notice(receiver, "closing"), timeout=15, what="closing PSAP notice")
        assert closing["psap"]["ended_at"] is not None
        ended = _ts(closing["psap"]["ended_at"])
        assert abs(ended - t_resolved) < WATCH["interval_s"] + 3
        assert ended <= wall.of(hit) <= ended + WATCH["interval_s"] + 5
        # the public stops (its calls in flight end first: a call sent to a stopped host fails with
        # the edge's 408 up to fr_timer later, after the resolution); the watch collects the edge's
        # failed calls at each round's start, so two rounds after that hold the last of them
        public = json.loads(cli("lab", "traffic", "stop", "--state-dir", str(lab.state_dir), "--json").stdout)
        quiet = time.time()
        _eventually(lambda: True if sum(t > quiet for t, _ in watch.rounds) >= 2 else None, timeout=30,
                    what="two watch rounds after the public stopped")
    finally:
        rc = watch.stop()
    assert rc in (0, 5), watch.stderr

    # the failed callers: exactly those the public's own caller logged as failed
    logged = _logged_failures(Path(public["run_dir"]))
    blind = [e.data for e in WatchJournal(journal).events(kind="failed_calls_blind")]
    assert not blind, f"the watch could not read the edge's failed calls: {blind[:3]}"
    listed = _callers(journal, initial["incident_id"], before)
    assert logged, "the outage made no call fail"
    assert {c["call_id"]: (c["caller"], c["number"]) for c in listed} == logged
    assert {c["call_id"] for c in early if c["at"] <= t_open} == {c["call_id"] for c in listed if c["at"] <= t_open}
    assert all(c["site"] in (SITE, "none") for c in listed)
    assert len({c["caller"] for c in listed}) > 1  # the public calls as many identities

    # each notice once, to the PSAPs only; on-call heard the incident
    psap_hits = [h for h in receiver.hits if h.path == "/hooks/psaps"]
    assert [h.body["alert"]["psap"]["notice"] for h in psap_hits] == ["initial", "follow_up", "closing"]
    assert not any(h.body["alert"]["kind"] == "psap_notice" for h in receiver.hits if h.path == "/hooks/ops")
    kinds = [e.kind for e in WatchJournal(journal).events()]
    assert kinds.count("psap_notice_submitted") == 3 and "psap_clock_failed" not in kinds

    incident = initial["incident_id"]
    shown = cli("incidents", "show", incident, "--config", str(alerts), "--json")
    assert shown.returncode == 0, shown.stderr
    clock = json.loads(shown.stdout)["psap_clock"]
    assert [(n["notice"], n["on_time"], [d["state"] for d in n["deliveries"]]) for n in clock["notices"]] == [
        ("initial", True, ["sent"]), ("follow_up", True, ["sent"]), ("closing", None, ["sent"])]
    human = cli("incidents", "show", incident, "--config", str(alerts))
    assert human.returncode == 0 and "PSAP clock" in human.stdout
    print(f"\npsap: opened {t_open - t_break:.1f}s after the break; public {public['attempted']} calls, "
          f"{public['failed']} lost\n{human.stdout}")
