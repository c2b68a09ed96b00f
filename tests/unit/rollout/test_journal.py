"""State machine and journal: legal moves only, the run lock, leases, WAL, events."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.rollout.journal import Journal, RolloutLocked
from orchestrator.rollout.machine import TERMINAL, TRANSITIONS, IllegalTransition, Phase, check

PLAN = {"target": "5.6.0-lab2", "waves": []}


def new_run(j: Journal) -> str:
    return j.create_run(plan=PLAN, digest="d" * 64, target="5.6.0-lab2", inventory="inv.yml", policy="p.yml").id


def test_transition_table_is_closed_and_terminals_have_no_exit() -> None:
    for src, dsts in TRANSITIONS.items():
        assert dsts <= set(Phase), src
    assert {Phase.HALTED, Phase.COMPLETED, Phase.ABORTED} == TERMINAL
    # every phase that can change a site can reach a rollback or an abort
    for phase in (Phase.DRAINING, Phase.SWITCHING, Phase.POSTCHECKING, Phase.GATING, Phase.STEPPING, Phase.BAKING):
        assert Phase.ROLLING_BACK in TRANSITIONS[phase]
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
    j = Journal(tmp_path / "j.sqlite")
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
    j = Journal(tmp_path / "j.sqlite")
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
    Journal(Path(path))
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
    j = Journal(tmp_path / "j.sqlite")
    run = new_run(j)
    j.take_lease(run)
    j.take_lease(run)  # the same process may take it again
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("UPDATE runs SET lease_pid=1 WHERE id=?", (run,))  # pid 1 lives: another driver
    db.commit()
    with pytest.raises(RolloutLocked, match="being driven"):
        j.take_lease(run)
    db.execute("UPDATE runs SET lease_pid=999999 WHERE id=?", (run,))  # a dead driver's lease is free
    db.commit()
    j.take_lease(run)


def test_unknown_run_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no rollout run"):
        Journal(tmp_path / "j.sqlite").run("nope")
