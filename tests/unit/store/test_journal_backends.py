"""The rollout journal on both backends (a real PostgreSQL server the session starts):
the run lock and leases across processes and simulated runners, fencing, migrations."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from orchestrator.errors import InvalidInput
from orchestrator.rollout.journal import SCHEMA_VERSION, Journal, LeaseLost, RolloutLocked
from orchestrator.rollout.machine import Phase
from orchestrator.rollout.state import WaveProgress
from tests.conftest import REPO

PLAN = {"target": "5.6.0-lab2", "waves": []}


def new_run(j: Journal) -> str:
    return j.create_run(plan=PLAN, digest="d" * 64, target="5.6.0-lab2", inventory="inv.yml", policy="p.yml").id


def driver(*args: str, holder: str, lease_s: float = 30, freeze_after: int = -1) -> subprocess.Popen[str]:
    env = {**os.environ, "CALLFLEET_HOLDER": holder, "CALLFLEET_LEASE_S": str(lease_s), "PYTHONPATH": str(REPO),
           "DRIVER_FREEZE_AFTER": str(freeze_after)}
    return subprocess.Popen([sys.executable, "-m", "tests.unit.store.driver", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_leased(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "leased", (line, proc.stderr.read() if proc.stderr else "")


def test_a_journal_is_created_only_on_request_and_is_versioned(store_url: str) -> None:
    with pytest.raises(InvalidInput, match="no rollout journal here"):
        Journal(store_url)
    j = Journal(store_url, create=True)
    assert j.schema_version() == SCHEMA_VERSION
    run = new_run(j)
    j.transition(run, Phase.PREFLIGHT)
    ro = Journal(store_url, read_only=True)
    assert [e.kind for e in ro.events(run)] == ["created", "transition"]
    assert ro.integrity_ok()


def test_the_run_lock_names_the_first_run_and_frees_on_a_terminal_phase(store_url: str) -> None:
    j = Journal(store_url, create=True)
    first = new_run(j)
    with pytest.raises(RolloutLocked, match=first) as err:
        new_run(j)
    assert err.value.exit_code == 9
    j.transition(first, Phase.ABORTED)
    assert j.lock_holder() is None


def test_six_runners_racing_for_the_run_lock_exactly_one_wins(store_url: str) -> None:
    """Six processes with six holder identities (as six CI runners) start a rollout together."""
    Journal(store_url, create=True)
    procs = [driver("start", store_url, holder=f"runner-{i}") for i in range(6)]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 9, 9, 9, 9, 9], results
    winner_index = next(i for i, r in enumerate(results) if r[0] == 0)
    winner = results[winner_index][1].strip()
    for code, _out, err in results:
        if code == 9:
            assert winner in err and f"runner-{winner_index}" in err, err  # names the run and its runner
    assert [r.id for r in Journal(store_url).runs()] == [winner]


def test_a_live_lease_of_another_runner_is_refused_naming_it(store_url: str) -> None:
    run = new_run(Journal(store_url, create=True))
    holder = driver("drive", store_url, run, holder="runner-a", lease_s=30)
    try:
        wait_leased(holder)
        other = driver("drive", store_url, run, "1", holder="runner-b")
        assert other.wait(60) == 9
        assert f"process {holder.pid} on runner-a" in other.communicate()[1]
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holders_lease_is_taken_over_after_it_expires(store_url: str) -> None:
    run = new_run(Journal(store_url, create=True))
    # long enough that the early try (a whole interpreter start on a loaded machine) falls inside it
    lease_s = 8.0
    holder = driver("drive", store_url, run, holder="runner-a", lease_s=lease_s)
    wait_leased(holder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    killed_at = time.monotonic()
    early = driver("drive", store_url, run, "1", holder="runner-b", lease_s=lease_s)
    assert early.wait(60) == 9, early.communicate()
    # the last renewal was at most a third of a lease before the kill: still inside the lease
    assert time.monotonic() - killed_at < lease_s * 2 / 3
    while time.monotonic() - killed_at < lease_s + 0.5:
        time.sleep(0.1)
    late = driver("drive", store_url, run, "3", holder="runner-b", lease_s=lease_s)
    err = late.communicate(timeout=60)[1]
    assert late.returncode == 0, err
    j = Journal(store_url, read_only=True)
    steps = [e.data["by"] for e in j.events(run, kind="step")]
    assert steps[-3:] == ["runner-b"] * 3
    assert j.run(run).lease_pid is None  # dropped on the way out
    assert j.run(run).lease_token == 2


@pytest.mark.parametrize("taken_over", [True, False])
def test_a_holder_frozen_past_its_lease_is_fenced_off_when_it_resumes(store_url: str, taken_over: bool) -> None:
    """SIGSTOP past the lease; whether or not another runner took over meanwhile, the frozen
    holder's next write is refused, it exits 9 with a clear message, and nothing it wrote
    lands after the takeover."""
    run = new_run(Journal(store_url, create=True))
    frozen = driver("drive", store_url, run, holder="runner-a", lease_s=1.5, freeze_after=2)
    wait_leased(frozen)
    while Path(f"/proc/{frozen.pid}/stat").read_text().split(") ")[1][0] != "T":
        time.sleep(0.05)
    time.sleep(2.5)
    if taken_over:
        other = driver("drive", store_url, run, "3", holder="runner-b", lease_s=1.5)
        assert other.wait(60) == 0, other.communicate()
    frozen.send_signal(signal.SIGCONT)
    assert frozen.wait(60) == 9
    err = frozen.communicate()[1]
    assert "lost its lease" in err and "Traceback" not in err, err
    assert ("took it over" in err) is taken_over and ("expired" in err) is not taken_over
    steps = [e.data["by"] for e in Journal(store_url, read_only=True).events(run, kind="step")]
    if taken_over:
        first_b = steps.index("runner-b")
        assert set(steps[first_b:]) == {"runner-b"}


def test_a_lost_lease_refuses_every_kind_of_write_in_process(store_url: str) -> None:
    j = Journal(store_url, create=True, lease_s=30)
    run = new_run(j)
    j.take_lease(run)
    thief = Journal(store_url, lease_s=30)
    os.environ["CALLFLEET_HOLDER"] = "runner-thief"
    try:
        # expire our lease by the database's clock, then let another runner take it
        with j.store.write() as conn:
            conn.exec_driver_sql("UPDATE runs SET lease_expires = 0")
        thief.take_lease(run)
    finally:
        del os.environ["CALLFLEET_HOLDER"]
    for write in (lambda: j.record(run, "x"), lambda: j.transition(run, Phase.PREFLIGHT),
                  lambda: j.update_progress(run, {"k": 1})):
        with pytest.raises(LeaseLost, match="runner-thief"):
            write()
    assert j.run(run).phase == Phase.PENDING
    j.drop_lease(run)  # not ours any more: leaves the thief's lease
    assert j.run(run).lease_host == "runner-thief"


def test_a_postgresql_database_with_foreign_tables_is_refused(pg_server: object) -> None:
    from tests.pg_server import PgServer

    assert isinstance(pg_server, PgServer)
    url = pg_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (x TEXT)")
    with pytest.raises(InvalidInput, match="not a callfleet rollout journal"):
        Journal(url, create=True)


def test_an_unreachable_postgresql_journal_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="cannot reach"):
        Journal("postgresql://nobody@127.0.0.1:1/none", create=True)


LEGACY_SCHEMA = """
CREATE TABLE runs (
  id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, actor TEXT NOT NULL,
  target TEXT NOT NULL, plan TEXT NOT NULL, digest TEXT NOT NULL, inventory TEXT NOT NULL,
  policy TEXT NOT NULL, phase TEXT NOT NULL, wave INTEGER NOT NULL DEFAULT 0,
  progress TEXT NOT NULL DEFAULT '{}', lease_pid INTEGER, lease_host TEXT, outcome TEXT
);
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL REFERENCES runs(id), ts REAL NOT NULL,
  kind TEXT NOT NULL, phase TEXT NOT NULL, wave INTEGER NOT NULL, site TEXT, data TEXT NOT NULL
);
CREATE INDEX events_run ON events(run, seq);
CREATE TABLE locks (name TEXT PRIMARY KEY, run TEXT NOT NULL, since REAL NOT NULL);
INSERT INTO runs VALUES ('r1', 1, 1, 'me', '5.6.0', '{}', 'd', 'inv', 'pol', 'baking', 2,
                         '{"approvals": {"2": "ann"}, "wave2_step": 3, "wave2_bake_started": 5.5}',
                         NULL, NULL, NULL);
INSERT INTO events(run, ts, kind, phase, wave, site, data) VALUES ('r1', 1, 'created', 'pending', 0, NULL, '{}');
INSERT INTO locks VALUES ('rollout', 'r1', 1);
"""


@pytest.mark.parametrize("with_lease_start", [False, True])
def test_todays_sqlite_journals_open_after_migration(tmp_path: Path, with_lease_start: bool) -> None:
    """Journals from before schema versions (with and without the lease_start column)."""
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(LEGACY_SCHEMA)
    if with_lease_start:
        db.execute("ALTER TABLE runs ADD COLUMN lease_start INTEGER")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    ro = Journal(path, read_only=True)  # reading migrates nothing
    assert ro.schema_version() == 0 and ro.run("r1").phase == Phase.BAKING
    j = Journal(path)
    assert j.schema_version() == SCHEMA_VERSION
    run = j.run("r1")
    assert (run.phase, run.wave, run.lease_token) == (Phase.BAKING, 2, 0)
    # the flat per-wave keys of older journals are read into the typed run state
    assert run.progress.approvals == {2: "ann"}
    assert run.progress.wave(2) == WaveProgress(step=3, bake_started=5.5)
    assert j.lock_holder() == "r1"
    j.take_lease("r1")
    j.transition("r1", Phase.WAVE_DONE)
    j.drop_lease("r1")
    assert [e.kind for e in j.events("r1")] == ["created", "transition"]
    assert Journal(path).schema_version() == SCHEMA_VERSION  # idempotent
    assert sqlite3.connect(path).execute("PRAGMA application_id").fetchone()[0] != 0


def test_a_journal_newer_than_this_callfleet_is_refused(store_url: str) -> None:
    j = Journal(store_url, create=True)
    with j.store.write() as conn:
        conn.exec_driver_sql("UPDATE callfleet_schema SET version = 99")
    with pytest.raises(InvalidInput, match="newer than this callfleet"):
        Journal(store_url)


def test_a_held_write_lock_is_exit_9_on_postgresql(pg_server: object) -> None:
    from tests.pg_server import PgServer

    assert isinstance(pg_server, PgServer)
    url = pg_server.new_database()
    j = Journal(url, create=True, busy_timeout_s=0.3)
    holder = Journal(url)
    with holder.store.write():
        with pytest.raises(RolloutLocked, match="write lock") as err:
            new_run(j)
        assert err.value.exit_code == 9


def test_status_and_history_take_a_store_url(store_url: str) -> None:
    from tests.conftest import cli

    inventory = str(REPO / "inventory" / "production.example.yml")
    proc = cli("rollout", "status", "--journal", store_url, "-i", inventory)
    assert proc.returncode == 2 and "no rollout journal here" in proc.stderr, proc.stderr
    run = new_run(Journal(store_url, create=True))
    proc = cli("rollout", "history", "--journal", store_url, "-i", inventory)
    assert proc.returncode == 0 and run in proc.stdout, proc.stderr


def test_the_heartbeat_keeps_a_live_drivers_lease_past_its_length(store_url: str) -> None:
    j = Journal(store_url, create=True, lease_s=2.0)
    run = new_run(j)
    j.take_lease(run)
    try:
        time.sleep(5.0)  # well past one lease length: only the heartbeat (every 0.67 s) keeps it
        j.record(run, "still-mine")
        os.environ["CALLFLEET_HOLDER"] = "runner-other"
        try:
            with pytest.raises(RolloutLocked, match="being driven by process"):
                Journal(store_url, lease_s=2.0).take_lease(run)
        finally:
            del os.environ["CALLFLEET_HOLDER"]
    finally:
        j.drop_lease(run)
    assert j.run(run).lease_pid is None
