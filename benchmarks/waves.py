"""A rollout's waves measured from its journal, and the ideal wave its policy allows (issue #16).

Every effect is journalled before and after it runs and every phase change is a transition,
so a wave's wall time (from its `preparing` transition to its `wave_done`) splits into:

  - preflight: the preparation on the critical path (zero for a wave staged during the
    previous one's bake);
  - drain, switch (the Ansible switch run), post-check (testinfra);
  - gate: the synthetic+canary, drill and soak stages (their own seconds from the gate event);
  - steps: the live-traffic steps; bake: the configured bake; health: the bake's health probe;
  - orchestrator: the rest of the wave (planning, journal writes, SSH reads, scheduling).

Staging (the next site's preflight while this one steps and bakes) runs beside the wave, off
its critical path: it is reported apart, never added to a wave.

The ideal wave keeps every safety step and does nothing else: the policy's call windows
(synthetic and drill calls at the synthetic rate, the soak's duration), its configured waits
(each live step's bake plus the metrics lag, the wave's bake), and two physical minima measured
on the lab's hosts: one restart of Kamailio to readiness (the switch) and tm's wait timer on
each side of the soak (memory can only be read once finished transactions are freed)."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import RemoteError
from orchestrator.estate import hostcmd
from orchestrator.estate.model import Estate, Host
from orchestrator.fabricops.run import run_on_hosts
from orchestrator.policy.model import GatePolicy
from orchestrator.rollout.journal import Event

# Effects inside a wave, and the part of the split each belongs to.
PART = {"preflight": "preflight", "drain": "drain", "switch": "switch", "post-check": "post-check",
        "gate": "gate", "live-steps": "steps", "health": "health"}
TM_WAIT_TIMER_DEFAULT_S = 5.0  # Kamailio tm's wt_timer default, when a host does not report it
PARTS = ["preflight", "drain", "switch", "post-check", "synthetic+canary", "drill", "soak", "steps", "bake",
         "health", "orchestrator"]


class Physical(BaseModel):
    """Minima measured on the lab's hosts, not set by the policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    restart_s: float   # systemctl restart of the call server until it answers
    wait_timer_s: float  # Kamailio tm wt_timer: how long a finished transaction is held


class WaveTime(BaseModel):
    """One wave's wall time, split, and its ideal."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    wave: int
    site: str
    seconds: float
    parts: dict[str, float]
    staged_s: float | None  # the staging of this wave's site during the previous wave (off the path)
    ideal_s: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.ideal_s


def ideal_wave(gate: GatePolicy, *, steps: list[dict[str, Any]], bake_s: float,
               physical: Physical) -> dict[str, float]:
    """The ideal wave's parts, in seconds."""
    synthetic = gate.synthetic.calls_per_number / gate.synthetic.rate
    drill = gate.drill.calls_per_number / gate.synthetic.rate
    soak = gate.soak.duration_s + 2 * physical.wait_timer_s
    live = sum(max(float(s["bake_s"]), 1.0) + gate.live_steps.metrics_lag_s for s in steps)
    return {"switch": physical.restart_s, "synthetic+canary": synthetic, "drill": drill, "soak": soak,
            "steps": live, "bake": bake_s}


def waves(events: list[Event], plan: dict[str, Any], gate: GatePolicy, physical: Physical) -> list[WaveTime]:
    """Every completed wave of a run, split, with its ideal."""
    by_wave: dict[int, list[Event]] = defaultdict(list)
    bounds: dict[int, list[float]] = {}
    for e in events:
        if e.kind == "transition" and e.phase == "preparing":
            bounds[e.wave] = [e.ts]
        elif e.kind == "transition" and e.phase == "wave_done" and e.wave in bounds:
            bounds[e.wave].append(e.ts)
    for e in events:
        if e.kind != "stage" and e.wave in bounds and len(bounds[e.wave]) == 2 \
                and bounds[e.wave][0] <= e.ts <= bounds[e.wave][1]:
            by_wave[e.wave].append(e)
    staged = {int(e.data["wave"]): float(e.data["seconds"]) for e in events
              if e.kind == "stage" and e.data.get("state") == "ready"}
    plan_waves = {int(w["index"]): w for w in plan["waves"]}
    out = []
    for index, (start, end) in sorted((i, b) for i, b in bounds.items() if len(b) == 2):
        parts = _split(by_wave[index], end)
        parts["orchestrator"] = (end - start) - sum(parts.values())
        w = plan_waves[index]
        ideal = ideal_wave(gate, steps=w["traffic_steps"], bake_s=float(w["bake_s"]),
                           physical=physical)
        out.append(WaveTime(wave=index, site=str(w["site"]), seconds=end - start,
                            parts={p: round(parts.get(p, 0.0), 2) for p in PARTS}, staged_s=staged.get(index),
                            ideal_s=round(sum(ideal.values()), 2)))
    return out


def _split(events: list[Event], end: float) -> dict[str, float]:
    parts: dict[str, float] = defaultdict(float)
    started: dict[str, float] = {}
    baking: float | None = None
    for e in events:
        effect = str(e.data.get("effect", ""))
        if e.kind == "before":
            started[effect] = e.ts
            if effect == "health" and baking is not None:
                parts["bake"] += e.ts - baking  # the configured bake ends where its probe begins
                baking = None
        elif e.kind == "after" and effect in started:
            seconds = e.ts - started.pop(effect)
            if effect == "gate":
                continue  # its stages, from the gate event, below
            parts[PART.get(effect, "orchestrator")] += seconds
        elif e.kind == "gate" and e.phase == "gating":
            for stage in e.data.get("stages", []):
                parts[str(stage["stage"])] += float(stage["seconds"])
        elif e.kind == "transition" and e.phase == "baking":
            baking = e.ts
    if baking is not None:
        parts["bake"] += end - baking
    return dict(parts)


def summary(times: list[WaveTime]) -> dict[str, float]:
    """Median wave, its ideal, the ratio over all waves and the worst wave's."""
    if not times:
        return {}
    return {"waves": len(times), "median wave s": round(statistics.median(t.seconds for t in times), 1),
            "median ideal s": round(statistics.median(t.ideal_s for t in times), 1),
            "ratio (sum of waves / sum of ideals)": round(sum(t.seconds for t in times)
                                                          / sum(t.ideal_s for t in times), 2),
            "worst wave ratio": round(max(t.ratio for t in times), 2)}


def wait_timer_s(kamailio_cfg: Path) -> float:
    """tm's wait timer as the release configures it (`modparam("tm", "wt_timer", MS)`), else
    Kamailio's default (5 s): Kamailio does not expose it over RPC ("not readable")."""
    m = re.search(r'modparam\(\s*"tm"\s*,\s*"wt_timer"\s*,\s*(\d+)\s*\)', kamailio_cfg.read_text())
    return int(m.group(1)) / 1000 if m else TM_WAIT_TIMER_DEFAULT_S


def measure_physical(estate: Estate, host: Host, kamailio_cfg: Path) -> Physical:
    """One restart of the call server on `host` until it answers on its control socket (run
    only on a lab whose traffic has stopped; the wait is bounded, 20 s), and the release's tm
    wait timer (`wait_timer_s`)."""
    ctl = hostcmd.kamcmd(estate, host)
    command = (f"t0=$(date +%s.%N); {hostcmd.sudo(estate)}systemctl restart {hostcmd.SYSTEMD_UNIT}; "
               f"for i in $(seq 400); do {ctl} core.uptime >/dev/null 2>&1 && break; sleep 0.05; done; "
               "t1=$(date +%s.%N); echo \"$t0 $t1\"")
    result = run_on_hosts(estate=estate, hosts=[host], command=command, timeout=60).results[0]
    fields = result.stdout.split()
    if not result.ok or len(fields) != 2:
        raise RemoteError(f"{host.name}: could not time a restart: {result.error or result.stdout.strip()}")
    return Physical(restart_s=round(float(fields[1]) - float(fields[0]), 2), wait_timer_s=wait_timer_s(kamailio_cfg))
