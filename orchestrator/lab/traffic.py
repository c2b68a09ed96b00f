"""The background caller: the public, calling emergency numbers through the edge.

Its failed calls are the calls a rollout lost. Each `start` makes a new run
directory; `report` reads SIPp's cumulative statistics (written every second).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator import procs
from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.lab.state import Component, LabState
from orchestrator.lab.topology import LabParams, caller_address, edge_address
from orchestrator.sipp import scenarios

MAX_DURATION_S = 7 * 24 * 3600
MAX_RATE = 500.0


class TrafficReport(BaseModel):
    """What the background caller saw since it started."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    state: Literal["running", "stopped"]
    rate: float
    elapsed_s: float
    attempted: int
    answered: int
    failed: int
    in_flight: int
    failures: dict[str, int]
    run_dir: str


def _load(state_dir: Path) -> LabState:
    state = LabState.load(state_dir.resolve())
    if state is None:
        raise InvalidInput(f"{state_dir}: no lab here; run `callfleet lab up` first")
    return state


def _meta_path(state_dir: Path) -> Path:
    return state_dir.resolve() / "traffic" / "current.json"


LAB_CALLERS = 50  # distinct caller identities of the lab's public
# The public waits for an answer longer than the edge's own INVITE timer (tm fr_inv_timer, 8 s in
# edge.cfg): a call whose site went silent after its 100 Trying then ends with the edge's 408 on
# both sides, so the caller's own record of failed calls and the edge's failed-callers list agree.
RECV_TIMEOUT_MS = 12_000


def start(*, state_dir: Path, rate: float, duration_s: int) -> dict[str, object]:
    """Start calling through the edge at `rate` calls/s for at most `duration_s` seconds."""
    if not 0 < rate <= MAX_RATE:
        raise InvalidInput(f"--rate: {rate:g} is out of range (0, {MAX_RATE:g}]")
    if not 1 <= duration_s <= MAX_DURATION_S:
        raise InvalidInput(f"--duration: {duration_s} is out of range 1..{MAX_DURATION_S}")
    state_dir = state_dir.resolve()
    state = _load(state_dir)
    comp = state.components.get("traffic")
    if comp is not None and comp.status() == "running":
        raise InvalidInput(f"the background caller already runs (pid {comp.pid}); stop it first")
    params = LabParams(sites=state.params.sites, hosts_per_site=state.params.hosts_per_site,
                       base=state.params.base)
    from orchestrator.lab.topology import LAB_NUMBERS

    run_dir = state_dir / "traffic" / time.strftime("%Y%m%dT%H%M%S")
    # the public: many callers (so the failed-callers list names who called), each number in turn
    numbers = scenarios.write_numbers(run_dir / "numbers.csv", [n for n, _ in LAB_NUMBERS],
                                      callers=[f"+3361000{k:04d}" for k in range(LAB_CALLERS)])
    calls = max(1, int(rate * duration_s))
    argv = scenarios.caller_argv(local_address=str(caller_address(params)),
                                 target=f"{edge_address(params)}:5060", numbers_file=numbers,
                                 calls=calls, rate=rate, hold_ms=100, time_limit_s=duration_s + 30,
                                 recv_timeout_ms=RECV_TIMEOUT_MS)
    log = run_dir / "sipp.log"
    pid = procs.spawn(argv, log=log, cwd=run_dir)
    if not procs.wait_for(lambda: scenarios.read_stats(run_dir) is not None or not procs.alive(pid),
                          timeout=5.0) or not procs.alive(pid):
        raise RemoteError(f"background caller did not start: {procs.tail(log)}")
    state.components["traffic"] = Component(name="traffic", kind="traffic",
                                            address=str(caller_address(params)), pid=pid,
                                            expect="sipp", log=str(log))
    state.save(state_dir)
    meta = {"pid": pid, "rate": rate, "started": time.time(), "run_dir": str(run_dir),
            "duration_s": duration_s}
    _meta_path(state_dir).write_text(json.dumps(meta))
    return meta


def report(*, state_dir: Path) -> TrafficReport:
    """Cumulative figures of the current (or last) background-caller run."""
    try:
        meta = json.loads(_meta_path(state_dir).read_text())
    except FileNotFoundError:
        raise InvalidInput("the background caller was never started; `callfleet lab traffic start`") from None
    run_dir = Path(meta["run_dir"])
    stats = scenarios.read_stats(run_dir)
    running = procs.alive(int(meta["pid"]), expect="sipp")
    ended = meta.get("stopped", time.time())
    if stats is None:
        stats = scenarios.CallStats(attempted=0, answered=0, failed=0)
    return TrafficReport(state="running" if running else "stopped", rate=float(meta["rate"]),
                         elapsed_s=float(ended) - float(meta["started"]), attempted=stats.attempted,
                         answered=stats.answered, failed=stats.failed,
                         in_flight=stats.in_flight if running else 0, failures=stats.failures,
                         run_dir=str(run_dir))


def stop(*, state_dir: Path) -> TrafficReport:
    """Stop placing calls, let those in progress finish, and report."""
    state_dir = state_dir.resolve()
    state = _load(state_dir)
    comp = state.components.get("traffic")
    if comp is not None and comp.pid is not None:
        scenarios.soft_stop(comp.pid)
        comp.desired = "stopped"
        state.save(state_dir)
        meta_path = _meta_path(state_dir)
        meta = json.loads(meta_path.read_text())
        meta.setdefault("stopped", time.time())
        meta_path.write_text(json.dumps(meta))
    return report(state_dir=state_dir)
