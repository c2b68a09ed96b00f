"""The typed run state (the journal's progress record): validated writes, legacy reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import ExitCode
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
from orchestrator.rollout.state import RunProgress, WaveProgress


def test_a_misspelt_or_mistyped_field_fails_where_it_is_written() -> None:
    with pytest.raises(ValueError, match="no field exitcode"):
        RunProgress().merged({"exitcode": 6})
    with pytest.raises(ValidationError):
        RunProgress().merged({"done_waves": ["two"]})
    with pytest.raises(ValidationError):
        RunProgress().merged({"exit_code": 42})  # not a documented exit code


def test_a_wave_change_keeps_the_other_waves_and_fields() -> None:
    p = RunProgress().merged(RunProgress().wave_change(1, step=2))
    p = p.merged(p.wave_change(2, bake_started=7.0))
    p = p.merged(p.wave_change(2, step=1))
    assert p.waves == {1: WaveProgress(step=2), 2: WaveProgress(step=1, bake_started=7.0)}
    assert p.wave(3) == WaveProgress()


def test_legacy_flat_wave_keys_are_folded_in() -> None:
    p = RunProgress.model_validate({"wave1_step": 2, "wave1_bake_started": 3.0, "wave4_step": 1,
                                    "waves": {"2": {"step": 5}}, "done_waves": [1]})
    assert p.waves == {1: WaveProgress(step=2, bake_started=3.0), 2: WaveProgress(step=5), 4: WaveProgress(step=1)}
    assert p.done_waves == (1,)


def test_the_journal_round_trips_the_state_and_merges_approvals(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite", create=True)
    run = j.create_run(plan={}, digest="d", target="5.6.0", inventory="inv", policy="pol")
    j.approve(run.id, 2, "ann")
    j.approve(run.id, 3, "bob")  # a second approval keeps the first (one transaction each)
    j.take_lease(run.id)
    j.transition(run.id, Phase.PREFLIGHT, progress={"original_weights": {"site1": 40}})
    j.transition(run.id, Phase.HALTED, progress={"halt_reason": "stop", "exit_code": ExitCode.REMOTE})
    j.drop_lease(run.id)
    p = j.run(run.id).progress
    assert p.approvals == {2: "ann", 3: "bob"}
    assert p.original_weights == {"site1": 40}
    assert (p.halt_reason, p.exit_code) == ("stop", ExitCode.REMOTE)
    with pytest.raises(ValueError, match="no field"):
        j.update_progress(run.id, {"wave2_step": 1})
    assert j.run(run.id).progress == p  # the refused write changed nothing
