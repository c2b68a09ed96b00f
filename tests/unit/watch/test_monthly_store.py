"""The statistics in the watch journal on SQLite and PostgreSQL (round trip, migration from the
previous schema), the supervisor filling them (probes per number, live spans per site without
overlap across a restart), and `callfleet report monthly` (exit codes, JSON, CSV, HTML)."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.errors import RemoteError
from orchestrator.schemas import validate
from orchestrator.store import url as urls
from orchestrator.store.db import Store
from orchestrator.store.migrate import current, upgrade
from orchestrator.watch.journal import MIGRATIONS, WatchJournal, read_tallies
from orchestrator.watch.model import Blind, ProbeSample
from orchestrator.watch.ports import Ports
from orchestrator.watch.stats import ALL_NUMBERS, LiveCount, Source, Tally, probe_counts
from orchestrator.watch.supervisor import Supervisor
from tests.unit.watch.helpers import NUMBERS, POLICY, SITES, site_probes

T = datetime(2026, 11, 10, 12, 0, tzinfo=UTC).timestamp()


def tally(start: float, site: str, number: str, attempts: int, answered: int,
          source: Source = Source.PROBE) -> Tally:
    return Tally(start=start, interval_s=300, site=site, number=number, source=source,
                 counts=probe_counts(attempts, answered, {"503": attempts - answered} if attempts > answered else {}))


def test_counts_add_up_per_row_and_read_back_on_both_backends(store_url: str) -> None:
    wj = WatchJournal(store_url, clock=lambda: T)
    wj.add_tallies([tally(T, "site1", "112", 10, 9), tally(T, "site1", ALL_NUMBERS, 100, 95, Source.LIVE)],
                   live_until={"site1": T + 30})
    wj.add_tallies([tally(T, "site1", "112", 10, 10)], live_until={"site1": T + 60})
    rows = wj.tallies(start=T, end=T + 300)
    assert [(r.number, r.source, r.counts.attempts, r.counts.answered) for r in rows] == \
        [("112", Source.PROBE, 20, 19), (ALL_NUMBERS, Source.LIVE, 100, 95)]
    assert rows[0].counts.causes == {"503": 1.0}
    assert wj.live_cursor() == {"site1": T + 60}
    got, has = read_tallies(store_url, start=T, end=T + 300)
    assert has and got == rows
    assert read_tallies(store_url, start=T + 300, end=T + 600) == ([], True)
    wj.store.dispose()


def test_a_journal_of_the_previous_version_migrates_and_keeps_its_events(store_url: str) -> None:
    loc = store_url
    u = urls.parse(loc)
    if u.backend is urls.Backend.SQLITE:
        u.file.parent.mkdir(parents=True, exist_ok=True)
    old = Store(u, component="watch")
    with old.write() as conn:
        upgrade(old, conn, "watch", MIGRATIONS[:2])  # what the previous callfleet created
        conn.execute(sa.text("INSERT INTO watch_events(ts, round, kind, data) VALUES (1, 1, 'started', '{}')"))
    with old.read() as conn:
        assert current(old, conn, "watch") == 2
    assert read_tallies(loc, start=0, end=T * 2) == ([], False)  # read-only: an old journal is not changed
    wj = WatchJournal(loc)
    with wj.store.read() as conn:
        assert current(wj.store, conn, "watch") == MIGRATIONS[-1].version == 4
    assert [e.kind for e in wj.events()] == ["started"]
    wj.add_tallies([tally(T, "site2", "15", 4, 4)])
    assert [r.site for r in wj.tallies(start=T, end=T + 1)] == ["site2"]
    old.dispose()
    wj.store.dispose()


# --- the supervisor fills them ---------------------------------------------------------------

class Prober:
    def __init__(self) -> None:
        self.rounds = 0

    def probe(self, *, at: float) -> tuple[list[ProbeSample], list[Blind]]:
        self.rounds += 1
        # site3's second host fails every call of 112 in round 2
        bad = [2] if self.rounds == 2 else []
        return [p for s in SITES for p in site_probes(s, at=at, bad_hosts=bad if s == "site3" else (),
                                                      bad_numbers=["112"])], []


class Counter:
    """10 live calls a second everywhere, 1 in 10 failing with 503; site6's metrics fail once."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self.fail_once = True

    def count(self, *, site: str, start: float, end: float) -> LiveCount:
        if site == "site6" and self.fail_once:
            self.fail_once = False
            raise RemoteError("Prometheus timed out")
        self.spans.append((site, start, end))
        n = 10 * (end - start)
        return LiveCount(site=site, start=start, end=end, attempts=n, answered=0.9 * n, failed=0.1 * n,
                         codes={"200": 0.9 * n, "503": 0.1 * n})


def run(journal: WatchJournal, clock: list[float], counter: Counter, rounds: int) -> None:
    def now() -> float:
        return clock[0]

    def wait(s: float) -> bool:
        clock[0] += s
        return False

    sup = Supervisor(sites=SITES, numbers=NUMBERS, policy=POLICY, journal=journal,
                     ports=Ports(prober=Prober(), counter=counter), clock=now, monotonic=now, wait=wait)
    sup.run(rounds=rounds)


def test_the_supervisor_records_probes_per_number_and_live_calls_without_overlap(tmp_path: Path) -> None:
    clock = [T + 250.0]  # rounds every 10 s (the policy): 12:04:10 ... crossing 12:05
    wj = WatchJournal(tmp_path / "w.sqlite", clock=lambda: clock[0])
    counter = Counter()
    run(wj, clock, counter, rounds=6)
    run(wj, clock, counter, rounds=3)  # a restart: live counting resumes from its cursor
    rows = wj.tallies(start=T, end=T + 600)
    probe = [r for r in rows if r.source is Source.PROBE]
    assert sum(r.counts.attempts for r in probe) == 9 * len(SITES) * len(NUMBERS) * 10  # 9 rounds, 2 hosts x 5
    site3_112 = [r for r in probe if r.site == "site3" and r.number == "112"]
    assert sum(r.counts.network_failure for r in site3_112) == 10  # round 2 of each run, host 2: 5 x unreachable
    assert {r.start for r in probe} == {T, T + 300}  # 12:00 and 12:05
    # live: each site's spans follow on from the first round's (end - interval) to the last round
    for site in SITES:
        spans = sorted((a, b) for s, a, b in counter.spans if s == site)
        assert all(b1 == a2 for (_, b1), (a2, _) in itertools.pairwise(spans)), site
        assert all(b <= T + 300 or a >= T + 300 for a, b in spans), "a span straddles an interval"
    live = {r.site: r for r in rows if r.source is Source.LIVE and r.start == T + 300}
    covered = {s: sum(b - a for x, a, b in counter.spans if x == s) for s in SITES}
    total_live = sum(r.counts.attempts for r in rows if r.source is Source.LIVE and r.site == "site1")
    assert total_live == pytest.approx(10 * covered["site1"])
    assert live["site1"].counts.asr == pytest.approx(0.9) and live["site1"].counts.network_failure > 0
    # site6's first count failed: journalled, and its next span starts where the failed one did
    assert [e.site for e in wj.events(kind="stats_blind")] == ["site6"]
    assert covered["site6"] == pytest.approx(covered["site1"])


# --- the CLI ------------------------------------------------------------------------------------

def _invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "watch.sqlite"
    wj = WatchJournal(path)
    wj.add_tallies([tally(T, "site1", "112", 50, 50), tally(T + 300, "site1", "112", 50, 20),
                    tally(T, "site2", "15", 40, 40), tally(T, "site1", ALL_NUMBERS, 200, 190, Source.LIVE)])
    wj.store.dispose()
    return path


@pytest.mark.parametrize("month", ["2026-13", "2026/11", "nov"])
def test_a_bad_month_is_exit_2_with_one_line(month: str, filled: Path) -> None:
    code, out, err = _invoke("report", "monthly", "--month", month, "--journal", str(filled))
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: --month {month!r}: expected YYYY-MM (e.g. 2026-01)"]
    code, out, _ = _invoke("report", "monthly", "--month", month, "--journal", str(filled), "--json")
    doc = json.loads(out)
    validate("error", doc)
    assert code == 2 and doc["exit_code"] == 2


def test_json_is_the_monthly_report_document(filled: Path, tmp_path: Path) -> None:
    code, out, _ = _invoke("report", "monthly", "--month", "2026-11", "--journal", str(filled), "--json",
                           "-i", str(tmp_path / "none.yml"))
    assert code == 2  # an inventory named on the command line must exist
    code, out, _ = _invoke("report", "monthly", "--month", "2026-11", "--journal", str(filled), "--json")
    assert code == 0
    doc = json.loads(out)
    validate("monthly-report", doc)
    n = {(x["source"], x["number"]): x for x in doc["numbers"]}
    assert {"15", "17", "18", "112"} <= {num for src, num in n if src == "probe"}
    assert n["probe", "112"]["figures"]["attempts"] == 100 and n["probe", "112"]["figures"]["asr"] == 0.7
    assert n["live", "all"]["figures"]["asr"] == 0.95
    assert {(c["number"], c["metric"], c["scope"]) for c in doc["crossings"]} >= {("112", "asr", "intervals")}


def test_an_empty_month_lists_every_number_with_no_data(filled: Path) -> None:
    code, out, _ = _invoke("report", "monthly", "--month", "2026-10", "--journal", str(filled), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["crossings"] == [] and doc["interval_s"] is None
    assert all(x["figures"]["attempts"] == 0 and x["figures"]["asr"] is None for x in doc["numbers"])
    assert any("did not run that month" in note for note in doc["notes"])
    code, _, err = _invoke("report", "monthly", "--month", "2026-10", "--journal", str(filled))
    assert code == 0 and "did not run that month" in err + _


def test_csv_has_figures_then_crossings(filled: Path) -> None:
    code, out, _ = _invoke("report", "monthly", "--month", "2026-11", "--journal", str(filled), "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    kinds = [r["record"] for r in rows]
    assert kinds == sorted(kinds, key=["figures", "crossing"].index) and "crossing" in kinds
    total = next(r for r in rows if r["record"] == "figures" and r["number"] == "112" and r["site"] == "all")
    assert float(total["attempts"]) == 100 and float(total["asr"]) == 0.7 and float(total["asr_min"]) == 0.9
    crossing = next(r for r in rows if r["record"] == "crossing" and r["scope"] == "intervals")
    assert crossing["start"] == "2026-11-10T12:05:00Z" and crossing["metric"] == "asr"
    code, _, err = _invoke("report", "monthly", "--month", "2026-11", "--journal", str(filled), "--csv", "--json")
    assert code == 2 and "choose one" in err


def test_html_is_one_page_and_the_rollout_report_still_answers_to_report_run(filled: Path, tmp_path: Path) -> None:
    page = tmp_path / "m.html"
    code, _, _ = _invoke("report", "monthly", "--month", "2026-11", "--journal", str(filled), "--html", str(page))
    text = page.read_text()
    assert code == 0 and "Emergency calls, 2026-11" in text and 'id="probe-112"' in text and "<script" not in text
    # `report RUN` and `report run RUN` are the rollout report: an unknown journal is exit 2 either way
    for argv in (["report", "r1"], ["report", "run", "r1"], ["report"]):
        code, _, err = _invoke(*argv, "--journal", str(tmp_path / "none.sqlite"))
        assert code == 2, (argv, err)
    code, out, _ = _invoke("report", "--help")
    assert code == 0 and "monthly" in out and "run" in out


def test_a_missing_watch_journal_is_exit_2(tmp_path: Path) -> None:
    code, _, err = _invoke("report", "monthly", "--month", "2026-11", "--journal", str(tmp_path / "no.sqlite"))
    assert code == 2 and "no watch journal" in err


def test_a_postgresql_journal_reports_too(pg_server: object) -> None:
    url = pg_server.new_database()  # type: ignore[attr-defined]
    wj = WatchJournal(url)
    wj.add_tallies([tally(T, "site1", "18", 30, 30)])
    wj.store.dispose()
    code, out, _ = _invoke("report", "monthly", "--month", "2026-11", "--journal", url, "--json")
    assert code == 0
    assert next(x for x in json.loads(out)["numbers"] if x["number"] == "18")["figures"]["attempts"] == 30
    assert urls.parse(url).backend is urls.Backend.POSTGRESQL
