"""The gate's stages: the impure part (probes, Fabric, steering, metrics) around the pure
verdicts of gate/verdict.py. Each stage returns a StageResult with its evidence."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import CallfleetError, RemoteError
from orchestrator.estate import hostcmd
from orchestrator.estate.model import Estate, Host
from orchestrator.fabricops.run import run_on_hosts
from orchestrator.gate.verdict import Judgement, Verdict, combine, judge_probe
from orchestrator.policy.model import GatePolicy
from orchestrator.probe import metrics
from orchestrator.probe.runner import ProbeReport, probe_site
from orchestrator.sipp.scenarios import CallStats


class StageResult(BaseModel):
    """One stage's verdict, reasons and evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    stage: str
    verdict: Verdict
    reasons: tuple[str, ...]
    calls: int
    seconds: float
    evidence: dict[str, Any]


def probe_with_baseline(*, estate: Estate, site: str, baselines: Sequence[str], calls: int,
                        rate: float) -> tuple[ProbeReport, list[ProbeReport]]:
    """The canary and its baselines probed in the same window (concurrently)."""
    with ThreadPoolExecutor(max_workers=1 + len(baselines)) as pool:
        futures = [pool.submit(probe_site, estate=estate, site=estate.site(s), calls=calls, rate=rate)
                   for s in (site, *baselines)]
        reports = [f.result() for f in futures]
    return reports[0], reports[1:]


def _baseline_stats(reports: list[ProbeReport]) -> dict[str, CallStats]:
    numbers = {n for r in reports for n in r.stats}
    return {n: metrics.merge(r.stats[n] for r in reports if n in r.stats) for n in numbers}


def _judgement_evidence(j: Judgement) -> dict[str, Any]:
    return {"numbers": [n.model_dump(mode="json") for n in j.numbers], "pooled_fisher_p": j.pooled_fisher_p}


def _latency_only(j: Judgement) -> bool:
    """A FAIL that rests on setup delay alone (no failed call)."""
    failing = [n for n in j.numbers if n.verdict == Verdict.FAIL]
    return bool(failing) and all(n.canary_failed == 0 for n in failing) and all(
        ("setup delay" in r or "SRD p95" in r) for n in failing for r in n.reasons)


def synthetic_and_canary(*, estate: Estate, site: str, baselines: Sequence[str], policy: GatePolicy,
                         stage: str = "synthetic+canary", calls: int | None = None) -> StageResult:
    """Stages 1 and 2: every number through every host of the (drained) site, judged on
    floors and against the baselines probed in the same window.

    A latency-only FAIL is confirmed by a second window before it counts: on a busy
    machine one window's scheduling delays can favour the baseline, and a real slowdown
    shows again while a passing spike does not. Failed calls are never given a second try."""
    t0 = time.monotonic()
    windows = []
    for attempt in range(2):
        canary, base = probe_with_baseline(estate=estate, site=site, baselines=baselines,
                                           calls=calls or policy.synthetic.calls_per_number,
                                           rate=policy.synthetic.rate)
        j = judge_probe(canary.stats, _baseline_stats(base), synthetic=policy.synthetic,
                        canary_policy=policy.canary)
        windows.append(j)
        if j.verdict != Verdict.FAIL or not _latency_only(j) or attempt == 1:
            break
    reasons = j.reasons if len(windows) == 1 else tuple(
        f"confirmed in a second window: {r}" if j.verdict == Verdict.FAIL else r for r in j.reasons) + (
        () if j.verdict == Verdict.FAIL else (f"a latency FAIL in the first window was not confirmed "
                                              f"({'; '.join(windows[0].reasons[:2])})",))
    return StageResult(stage=stage, verdict=j.verdict, reasons=tuple(reasons), calls=sum(w.calls for w in windows),
                       seconds=round(time.monotonic() - t0, 3),
                       evidence={"baseline_sites": list(baselines), **_judgement_evidence(j),
                                 "windows": len(windows),
                                 "per_host": [r.model_dump(mode="json") for r in canary.per_host]})


def drill(*, estate: Estate, site: str, baselines: Sequence[str], policy: GatePolicy,
          epoch: int | None = None) -> StageResult:
    """Stage 3: the routine reconnection commands on every host of the site, then probe again."""
    t0 = time.monotonic()
    epoch = epoch if epoch is not None else int(time.time())
    ran: list[dict[str, Any]] = []
    hosts = estate.site(site).hosts

    def run(template: str, host: Host) -> dict[str, Any]:
        # one command line per host: each host has its own root
        command = template.format(root=host.root, ctl=hostcmd.kamcmd(estate, host), epoch=epoch)
        result = run_on_hosts(estate=estate, hosts=[host], command=command,
                              timeout=policy.drill.timeout_s).results[0]
        rpc_error = bool(re.match(r"\s*error", result.stdout, re.IGNORECASE))
        return {"host": host.name, "command": command, "exit_code": result.exit_code,
                "ok": result.ok and not rpc_error,
                "output": (result.error or result.stdout or result.stderr).strip()[:300]}

    for template in policy.drill.commands:
        # each command on every host of the site at once, as an operator's routine applies it
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            per_host = list(pool.map(lambda h, t=template: run(t, h), hosts))
        ran.extend(per_host)
        bad = [r for r in per_host if not r["ok"]]
        if bad:
            return StageResult(stage="drill", verdict=Verdict.FAIL,
                               reasons=tuple(f"{r['host']}: `{r['command']}` failed: {r['output']}" for r in bad),
                               calls=0, seconds=round(time.monotonic() - t0, 3), evidence={"commands": ran})
    after = synthetic_and_canary(estate=estate, site=site, baselines=baselines, policy=policy, stage="drill",
                                 calls=policy.drill.calls_per_number)
    reasons = tuple(f"after the drill: {r}" for r in after.reasons)
    return after.model_copy(update={"reasons": reasons, "seconds": round(time.monotonic() - t0, 3),
                                    "evidence": {"commands": ran, **after.evidence}})


class MemorySample(BaseModel):
    """Memory of one host at one moment, and the SIP transactions tm still held then."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str
    t: float
    shm_real_used: int
    rss_kb: int
    transactions: int = 0


def sample_memory(estate: Estate, hosts: Sequence[Host]) -> list[MemorySample]:
    """core.shmmem real_used, tm's current transactions and the main process's RSS on each
    host, over SSH (Fabric), all hosts at once."""
    def one(host: Host) -> MemorySample:
        ctl = hostcmd.kamcmd(estate, host)
        cmd = (f"{ctl} core.shmmem | awk '/real_used/ {{print $2}}'; "
               f"{ctl} tm.stats | awk '$1 == \"current:\" {{print $2}}'; "
               f"ps -o rss= -p $({hostcmd.main_pid(estate, host)})")
        result = run_on_hosts(estate=estate, hosts=[host], command=cmd, timeout=15).results[0]
        nums = [int(x) for x in result.stdout.split() if x.isdigit()]
        if not result.ok or len(nums) != 3:
            raise RemoteError(f"{host.name}: memory sample failed: {result.error or result.stdout.strip()}")
        return MemorySample(host=host.name, t=time.time(), shm_real_used=nums[0], transactions=nums[1],
                            rss_kb=nums[2])

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return list(pool.map(one, hosts))


def settled(last: Sequence[MemorySample], now: Sequence[MemorySample], *, tolerance: int) -> bool:
    """Settled: no host holds a transaction any more, and none's shared memory still fell by
    more than `tolerance` bytes since the sample before (memory freed after its transactions)."""
    return all(a.transactions == 0 and b.shm_real_used - a.shm_real_used <= tolerance
               for b, a in zip(last, now, strict=True))


def settled_memory(estate: Estate, hosts: Sequence[Host], *, settle_s: float,
                   sleep: Callable[[float], None] = time.sleep, max_extra_s: float = 20.0,
                   tolerance: int = 8192, poll_s: float = 0.25,
                   sample: Callable[[Estate, Sequence[Host]], list[MemorySample]] = sample_memory,
                   ) -> list[MemorySample]:
    """Memory once finished calls have been freed: sampled every `poll_s` until `settled`
    (tm frees a finished transaction after its wait timer, 5 s by default), at most
    `settle_s + max_extra_s`; the last sample. A leak is not a transaction: it settles the same."""
    last = sample(estate, hosts)
    waited = 0.0
    while waited < settle_s + max_extra_s:
        sleep(poll_s)
        waited += poll_s
        now = sample(estate, hosts)
        done = settled(last, now, tolerance=tolerance)
        last = now
        if done:
            break
    return last


def soak(*, estate: Estate, site: str, baselines: Sequence[str], policy: GatePolicy,
         sleep: Callable[[float], None] = time.sleep) -> StageResult:
    """Stage 4: sustained load for the bake while memory is sampled; memory growing per
    call beyond the bound fails even when every call succeeded."""
    t0 = time.monotonic()
    p = policy.soak
    hosts = estate.site(site).hosts
    before = settled_memory(estate, hosts, settle_s=p.settle_s, sleep=sleep)
    samples: list[MemorySample] = list(before)
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(p.sample_every_s):
            try:
                samples.extend(sample_memory(estate, hosts))
            except CallfleetError:
                return  # a host that stops answering shows in the calls and the final sample

    numbers = len(estate.numbers)
    per_number_rate = p.rate / numbers
    calls = max(1, int(per_number_rate * p.duration_s))
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        canary, base = probe_with_baseline(estate=estate, site=site, baselines=baselines[:1], calls=calls,
                                           rate=per_number_rate)
    finally:
        stop.set()
        thread.join(timeout=30)
    after = settled_memory(estate, hosts, settle_s=p.settle_s, sleep=sleep)
    samples.extend(after)
    synthetic = policy.synthetic.model_copy(update={"min_calls_per_number": min(
        policy.synthetic.min_calls_per_number, calls)})
    j = judge_probe(canary.stats, _baseline_stats(base), synthetic=synthetic, canary_policy=policy.canary)
    reasons = list(j.reasons)
    verdicts = [j.verdict]
    growth = []
    calls_per_host = {r.host: 0 for r in canary.per_host}
    for r in canary.per_host:
        calls_per_host[r.host or ""] = calls_per_host.get(r.host or "", 0) + r.attempted
    for b, a in zip(before, after, strict=True):
        n = max(1, calls_per_host.get(b.host, 0))
        shm_per_call = (a.shm_real_used - b.shm_real_used) / n
        rss_per_call = (a.rss_kb - b.rss_kb) * 1024 / n
        growth.append({"host": b.host, "calls": n, "shm_before": b.shm_real_used, "shm_after": a.shm_real_used,
                       "shm_bytes_per_call": round(shm_per_call, 1), "rss_bytes_per_call": round(rss_per_call, 1)})
        if shm_per_call > p.max_shm_bytes_per_call:
            reasons.append(f"{b.host}: shared memory grew {shm_per_call:.0f} bytes per call "
                           f"(bound {p.max_shm_bytes_per_call:.0f}) over {n} calls")
            verdicts.append(Verdict.FAIL)
        if rss_per_call > p.max_rss_bytes_per_call:
            reasons.append(f"{b.host}: process memory grew {rss_per_call:.0f} bytes per call "
                           f"(bound {p.max_rss_bytes_per_call:.0f})")
            verdicts.append(Verdict.FAIL)
    return StageResult(stage="soak", verdict=combine(verdicts), reasons=tuple(reasons), calls=j.calls,
                       seconds=round(time.monotonic() - t0, 3),
                       evidence={"memory": growth, "samples": [s.model_dump() for s in samples],
                                 **_judgement_evidence(j)})


class LiveMetrics(Protocol):
    """What the live-steps stage needs from a metrics provider."""

    def check(self) -> None:
        """Raise when the backend cannot be read."""
        ...

    def site_window(self, *, site: str, window_s: float) -> Any:
        """Live attempts, failures and setup delay of a site over the last window."""
        ...
