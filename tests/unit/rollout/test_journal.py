"""State machine and journal: legal moves only, the run lock, leases, WAL, events."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from orchestrator import procs
from orchestrator.errors import InvalidInput
from orchestrator.rollout.journal import Journal, RolloutLocked, live_age_s
from orchestrator.rollout.machine import TERMINAL, TRANSITIONS, IllegalTransition, Phase, check
from tests.unit.rollout.plans import plan_doc

PLAN = {"target": "5.6.0-lab2", "waves": []}


def new_run(j: Journal) -> str:
    return j.create_run(plan=PLAN, digest="d" * 64, target="5.6.0-lab2", inventory="inv.yml", policy="p.yml").id


def test_transition_table_is_closed_and_terminals_have_no_exit() -> None:
    for src, dsts in TRANSITIONS.items():
        assert dsts <= set(Phase), src
    assert {Phase.HALTED, Phase.COMPLETED, Phase.ABORTED} == TERMINAL
    # every phase that can change a site reaches a rollback, and an abort only through it
    for phase in (Phase.DRAINING, Phase.SWITCHING, Phase.POSTCHECKING, Phase.GATING, Phase.STEPPING, Phase.BAKING):
        assert Phase.ROLLING_BACK in TRANSITIONS[phase]
        assert Phase.ABORTED not in TRANSITIONS[phase]
    assert Phase.ABORTED in TRANSITIONS[Phase.ROLLING_BACK]
    # nothing jumps from a wave's start to its live steps: the gate cannot be skipped
    reachable_without_gate = {Phase.PREPARING, Phase.DRAINING, Phase.SWITCHING, Phase.POSTCHECKING}
    for phase in reachable_without_gate:
        assert Phase.STEPPING not in TRANSITIONS[phase]


def test_illegal_moves_raise() -> None:
    with pytest.raises(IllegalTransition):
        check(Phase.SWITCHING, Phase.STEPPING)
    with pytest.raises(IllegalTransition):
        check(Phase.COMPLETED, Phase.PREFLIGHT)
    check(Phase.GATING, Phase.STEPPING)


def test_journal_is_wal_and_records_transitions(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", create=True)
    run = new_run(j)
    j.transition(run, Phase.PREFLIGHT)
    j.record(run, "before", site="site1", data={"effect": "drain"})
    with pytest.raises(IllegalTransition):
        j.transition(run, Phase.BAKING)
    assert j.run(run).phase == Phase.PREFLIGHT  # the refused move changed nothing
    kinds = [(e.kind, e.phase) for e in j.events(run)]
    assert kinds == [("created", "pending"), ("transition", "preflight"), ("before", "preflight")]
    mode = sqlite3.connect(tmp_path / "j.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert j.integrity_ok()


def test_a_second_rollout_is_refused_naming_the_first(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", create=True)
    first = new_run(j)
    with pytest.raises(RolloutLocked, match=first):
        new_run(j)
    j.transition(first, Phase.ABORTED)
    assert j.lock_holder() is None
    assert new_run(j) != first


def _start(path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        queue.put(("ok", new_run(Journal(Path(path)))))
    except RolloutLocked as exc:
        queue.put(("locked", exc.message))


def test_two_rollouts_started_together_exactly_one_proceeds(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    Journal(Path(path), create=True)
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_start, args=(path, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    results = [queue.get(timeout=5) for _ in procs]
    assert sorted(r[0] for r in results) == ["locked"] * 5 + ["ok"]
    winner = next(r[1] for r in results if r[0] == "ok")
    assert all(winner in r[1] for r in results if r[0] == "locked")


def test_lease_refuses_a_second_live_driver(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", create=True)
    run = new_run(j)
    j.take_lease(run)
    j.take_lease(run)  # the same process may take it again
    db = sqlite3.connect(tmp_path / "j.sqlite")
    # pid 1 lives and started when it did: another driver
    db.execute("UPDATE runs SET lease_pid=1, lease_start=? WHERE id=?", (procs.start_time(1), run))
    db.commit()
    with pytest.raises(RolloutLocked, match="being driven"):
        j.take_lease(run)
    db.execute("UPDATE runs SET lease_pid=999999 WHERE id=?", (run,))  # a dead driver's lease is free
    db.commit()
    j.take_lease(run)


def test_a_reused_pid_does_not_hold_a_dead_drivers_lease(tmp_path: Path) -> None:
    """The holder died and its pid now names another live process: the lease is free."""
    j = Journal(tmp_path / "j.sqlite", create=True)
    run = new_run(j)
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("UPDATE runs SET lease_pid=1, lease_start=? WHERE id=?", ((procs.start_time(1) or 0) + 1, run))
    db.commit()
    j.take_lease(run)
    assert j.run(run).lease_pid == os.getpid()


def test_drop_lease_leaves_another_holders_lease(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", create=True)
    run = new_run(j)
    db = sqlite3.connect(tmp_path / "j.sqlite")
    # the same pid, another process (another start time)
    db.execute("UPDATE runs SET lease_pid=?, lease_start=? WHERE id=?", (os.getpid(), 1, run))
    db.commit()
    j.drop_lease(run)
    assert j.run(run).lease_pid == os.getpid()


def _journal_file(tmp_path: Path) -> Path:
    j = Journal(tmp_path / "j.sqlite", create=True)
    new_run(j)
    return j.path


def test_a_typod_path_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no rollout journal here"):
        Journal(tmp_path / "typo" / "journal.sqlite")
    assert not (tmp_path / "typo").exists()


def test_a_directory_or_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="a directory"):
        Journal(tmp_path)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE notes (x TEXT)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(InvalidInput, match="not a callfleet rollout journal"):
        Journal(other, create=True)
    assert other.read_bytes() == before
    assert [r[0] for r in sqlite3.connect(other).execute("SELECT name FROM sqlite_master")] == ["notes"]


@pytest.mark.parametrize("damage", ["truncated", "garbage page", "not sqlite"])
def test_a_damaged_journal_is_refused_naming_it_with_how_to_recover(tmp_path: Path, damage: str) -> None:
    path = _journal_file(tmp_path)
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:-1]
    elif damage == "garbage page":
        page = int.from_bytes(data[16:18], "big")
        data[page: page + 100] = b"\xff" * 100  # the runs table's root page
    else:
        data = bytearray(b"hello, not a database" * 200)
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInput) as err:
        Journal(path, read_only=True)
    assert str(path) in err.value.message
    assert err.value.hint is not None and "recover" in err.value.hint


def test_a_read_only_journal_can_be_read(tmp_path: Path) -> None:
    path = _journal_file(tmp_path)
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        j = Journal(path, read_only=True)
        assert len(j.runs()) == 1
    finally:
        tmp_path.chmod(0o755)
        path.chmod(0o644)


def test_unknown_run_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no rollout run"):
        Journal(tmp_path / "j.sqlite", create=True).run("nope")


def test_status_on_a_mistyped_or_foreign_journal_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    from tests.conftest import REPO, cli

    inventory = str(REPO / "inventory" / "production.example.yml")
    typo = tmp_path / "typo" / "journal.sqlite"
    proc = cli("rollout", "status", "--journal", str(typo), "-i", inventory)
    assert proc.returncode == 2 and "no rollout journal here" in proc.stderr and "Traceback" not in proc.stderr
    assert not typo.parent.exists()
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").close()
    proc = cli("rollout", "history", "--journal", str(foreign), "-i", inventory)
    assert proc.returncode == 2 and "not a callfleet rollout journal" in proc.stderr


def _run_of(j: Journal, estate: str) -> str:
    return j.create_run(plan={**PLAN, "estate": estate}, digest="d" * 64, target="5.6.0-lab2",
                        inventory="inv.yml", policy="p.yml").id


def test_one_rollout_per_estate_across_journals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checkouts, each with its own default journal, cannot both roll the same estate."""
    monkeypatch.setenv("CALLFLEET_LOCK_DIR", str(tmp_path / "locks"))
    first = Journal(tmp_path / "a" / "journal.sqlite", create=True)
    second = Journal(tmp_path / "b" / "journal.sqlite", create=True)
    run = _run_of(first, "fr-emergency")
    with pytest.raises(RolloutLocked, match=f"rollout {run} of estate fr-emergency"):
        _run_of(second, "fr-emergency")
    assert second.runs() == []  # the refused journal got no run
    _run_of(second, "other-estate")  # another estate is free
    first.transition(run, Phase.ABORTED)
    _run_of(Journal(tmp_path / "c" / "journal.sqlite", create=True), "fr-emergency")


def test_a_claim_whose_journal_is_gone_is_taken_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLEET_LOCK_DIR", str(tmp_path / "locks"))
    gone = Journal(tmp_path / "a" / "journal.sqlite", create=True)
    _run_of(gone, "fr-emergency")
    gone.path.unlink()
    _run_of(Journal(tmp_path / "b" / "journal.sqlite", create=True), "fr-emergency")


def test_a_held_write_lock_is_exit_9_naming_the_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", create=True, busy_timeout_s=0.2)
    holder = sqlite3.connect(j.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RolloutLocked, match="write lock") as err:
            new_run(j)
        assert err.value.exit_code == 9
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_refused_second_run_of_the_same_journal_keeps_the_first_runs_claim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLEET_LOCK_DIR", str(tmp_path / "locks"))
    j = Journal(tmp_path / "a" / "journal.sqlite", create=True)
    run = _run_of(j, "fr-emergency")
    with pytest.raises(RolloutLocked, match="holds the rollout lock"):
        _run_of(j, "fr-emergency")
    with pytest.raises(RolloutLocked, match=f"rollout {run} of estate"):
        _run_of(Journal(tmp_path / "b" / "journal.sqlite", create=True), "fr-emergency")


def test_a_release_is_live_from_the_first_live_step_of_a_completed_run(tmp_path: Path) -> None:
    """The standing reserve's clock: completed runs only (a halted or undone run proved nothing),
    this estate's only; no journal at all: never live."""
    assert live_age_s(str(tmp_path / "none.sqlite"), estate="e", target="5.6.0", now=100.0) == 0.0
    j = Journal(tmp_path / "journal.sqlite", create=True)
    estate = f"live-{tmp_path.name}"

    def run(target: str, end: Phase, estate_name: str = estate) -> str:
        doc = plan_doc(estate_name)
        r = j.create_run(plan=doc, digest=doc["digest"], target=target, inventory="i", policy="p")
        j.take_lease(r.id)
        for phase, wave in ((Phase.PREFLIGHT, None), (Phase.PREPARING, 1), (Phase.DRAINING, None),
                            (Phase.SWITCHING, None), (Phase.POSTCHECKING, None), (Phase.GATING, None),
                            (Phase.STEPPING, None)):
            j.transition(r.id, phase, wave=wave)
        j.record(r.id, "traffic-step", site="site1", data={"step": 0, "percent": 10})
        if end == Phase.COMPLETED:
            for phase in (Phase.BAKING, Phase.WAVE_DONE, Phase.COMPLETED):
                j.transition(r.id, phase)
        else:
            j.transition(r.id, Phase.ROLLING_BACK)
            j.transition(r.id, Phase.HALTED)
        j.drop_lease(r.id)
        return r.id

    run("5.6.0", Phase.HALTED)
    assert j.live_since(estate=estate, target="5.6.0") is None  # rolled back: not live
    done = run("5.6.0", Phase.COMPLETED)
    first = j.events(done, kind="traffic-step")[0].ts
    assert j.live_since(estate=estate, target="5.6.0") == first
    assert j.live_since(estate=estate, target="5.7.0") is None
    assert j.live_since(estate=f"other-{tmp_path.name}", target="5.6.0") is None
    assert live_age_s(str(j.path), estate=estate, target="5.6.0", now=first + 86_400) == 86_400
