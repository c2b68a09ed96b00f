"""`callfleet report monthly` over a watch journal filled by a lab run (issue 19 item 2).

The public calls at 20 calls/s (the background caller) while `callfleet watch` runs a bounded
number of 2 s rounds with 10 s statistics intervals and drains nothing; one host of site3
loses its Kamailio for a few rounds. Then `report monthly` for the run's month(s) must give:
- probe seizures per number exactly as many as the watch made (rounds x sites x calls per
  number), each site's and number's ASR consistent with its counts, site3 the only site
  below 100 % with its host's calls recorded as network failures;
- a threshold crossing for 112, whose policy threshold (97 %) the fault breaks, and none for
  the numbers whose threshold is 50 %;
- live calls at the rate and answer ratio the background caller itself recorded over the
  same time (the edge's counters through Prometheus' increase(): within 15 %).
The lab is left as found: the host running, no site drained, no caller.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.watch.journal import WatchJournal
from tests.conftest import cli
from tests.lab.conftest import Lab, host_service, put_back
from tests.lab.test_watch import RUNNER, Watch

pytestmark = [pytest.mark.lab]

SITE, HOST = "site3", "site3-cs2"
CALLER_RATE = 20.0
ROUNDS = 24
CALLS_PER_NUMBER = 4
WATCH = {  # 2 s rounds, probes only judged for the incidents; nothing drained (the counts stay comparable)
    "interval_s": 2, "window_s": 6, "calls_per_number": CALLS_PER_NUMBER, "probe_rate": 16, "parallel_sites": 6,
    "min_probe_calls": 4, "ser_min": 0.9, "srd_p95_max_ms": 1000, "min_live_calls": 10, "asr_min": 0.8,
    "open_after": 2, "resolve_after": 2, "auto_drain": False, "auto_failover": False, "release_refresh_s": 60,
    "stats_interval_s": 10,
    "e425": {"default": {"asr_min": 0.5, "ner_min": 0.5, "min_attempts": 4},
             "numbers": {"112": {"asr_min": 0.97, "ner_min": 0.97, "min_attempts": 4}}},
}


@pytest.fixture()
def restore(lab: Lab) -> Iterator[None]:
    yield
    put_back(lab, [HOST])


def _traffic(lab: Lab, action: str, *extra: str) -> dict[str, Any]:
    proc = cli("lab", "traffic", action, *extra, "--state-dir", str(lab.state_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _months(start: float, end: float) -> list[str]:
    first, last = (datetime.fromtimestamp(t, UTC).strftime("%Y-%m") for t in (start, end))
    return sorted({first, last})


def test_report_monthly_counts_what_a_lab_watch_recorded(lab: Lab, tmp_path: Path, restore: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLEET_ALERTS", str(tmp_path / "no-alerts.yml"))  # journal only: nobody is paged
    policy = tmp_path / "policy.yml"
    policy.write_text(yaml.safe_dump({"name": "monthly-lab", "watch": WATCH}))
    journal = tmp_path / "watch.sqlite"
    _traffic(lab, "start", "--rate", str(int(CALLER_RATE)), "--duration", "300")
    time.sleep(5)  # the caller's first calls are through; Prometheus has scraped them
    before = _traffic(lab, "report")
    began = time.time()
    watch = Watch([sys.executable, "-c", RUNNER, "--policy", str(policy),
                   "--journal", str(journal), "-i", str(lab.inventory), "--rounds", str(ROUNDS), "--json"])
    try:
        deadline = time.monotonic() + 120
        while len(watch.rounds) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        host_service(lab, HOST, "stop")
        while len(watch.rounds) < 12 and time.monotonic() < deadline:
            time.sleep(0.2)
        host_service(lab, HOST, "start")
        while watch.proc.poll() is None and time.monotonic() < deadline + 120:
            time.sleep(0.5)
    finally:
        rc = watch.stop()
    ended = time.time()
    after = _traffic(lab, "report")
    assert len(watch.rounds) == ROUNDS, watch.stderr
    assert rc in (0, 5), watch.stderr
    rounds = [r for _, r in watch.rounds]
    assert not [b for r in rounds for b in r["blind"] if b["source"] == "probes"], "probes went blind"

    docs = []
    for month in _months(began, ended):
        proc = cli("report", "monthly", "--month", month, "--journal", str(journal), "--policy", str(policy),
                   "-i", str(lab.inventory), "--json")
        assert proc.returncode == 0, proc.stderr
        docs.append(json.loads(proc.stdout))
    numbers = [n.number for n in lab.estate.numbers]
    sites = [s.name for s in lab.estate.sites]

    def figures(source: str, number: str) -> list[dict[str, Any]]:
        return [n for d in docs for n in d["numbers"] if n["source"] == source and n["number"] == number]

    # probes: exactly the watch's calls, ASR per number and site consistent, site3 alone failing
    for number in numbers:
        rows = figures("probe", number)
        attempts = sum(n["figures"]["attempts"] for n in rows)
        answered = sum(n["figures"]["answered"] for n in rows)
        assert attempts == ROUNDS * len(sites) * CALLS_PER_NUMBER, number
        if len(rows) == 1:
            assert rows[0]["figures"]["asr"] == pytest.approx(answered / attempts, abs=1e-5)
        by_site: dict[str, dict[str, float]] = {}
        for n in rows:
            for s in n["sites"]:
                agg = by_site.setdefault(s["site"], {"attempts": 0.0, "answered": 0.0, "network_failure": 0.0})
                for k in agg:
                    agg[k] += s["figures"][k]
        assert set(by_site) == set(sites)
        for site, agg in by_site.items():
            assert agg["attempts"] == ROUNDS * CALLS_PER_NUMBER, (number, site)
            if site == SITE:
                # host 2 takes half of site3's calls: about 6 of 24 rounds failed there
                assert 0.5 <= agg["answered"] / agg["attempts"] < 1.0, (number, agg)
                assert agg["network_failure"] == agg["attempts"] - agg["answered"]
            else:
                assert agg["answered"] / agg["attempts"] >= 0.98, (number, site, agg)

    crossings = [c for d in docs for c in d["crossings"]]
    assert {c["number"] for c in crossings if c["source"] == "probe"} == {"112"}, crossings
    assert any(c["number"] == "112" and c["metric"] == "asr" and c["scope"] == "intervals" for c in crossings)

    # live: the edge's counts against the caller's own record, over the same time
    live = figures("live", "all")
    live_attempts = sum(n["figures"]["attempts"] for n in live)
    live_answered = sum(n["figures"]["answered"] for n in live)
    first_at = datetime.fromisoformat(rounds[0]["at"].replace("Z", "+00:00")).timestamp()
    cursor = WatchJournal(journal).live_cursor()
    assert set(cursor) == set(sites)
    covered = max(cursor.values()) - (first_at - WATCH["interval_s"])  # type: ignore[operator]
    caller_attempts = after["attempted"] - before["attempted"]
    caller_answered = after["answered"] - before["answered"]
    caller_rate = caller_attempts / (after["elapsed_s"] - before["elapsed_s"])
    assert live_attempts / covered == pytest.approx(caller_rate, rel=0.15), (live_attempts, covered, caller_rate)
    assert live_answered / live_attempts == pytest.approx(caller_answered / caller_attempts, abs=0.05)
