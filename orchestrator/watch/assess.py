"""Judge each site over the sliding window: SER and setup delay per number from the probes,
answer-seizure ratio and setup delay from the live window. Pure functions, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from orchestrator.policy.watch import WatchPolicy
from orchestrator.probe.metrics import percentile
from orchestrator.watch.model import LiveSample, NumberFigures, ProbeSample, SiteAssessment, Status

# A window never holds more than this many samples per site, host and number, whatever the
# policy's window and interval: memory stays bounded even with a tiny interval.
MAX_SAMPLES_PER_KEY = 500


def window(samples: Iterable[ProbeSample], *, now: float, window_s: float) -> tuple[ProbeSample, ...]:
    """The samples taken in the last `window_s` seconds (newest kept when over the cap)."""
    fresh = sorted((s for s in samples if now - window_s < s.at <= now), key=lambda s: s.at)
    per_key: Counter[tuple[str, str, str]] = Counter()
    kept: list[ProbeSample] = []
    for s in reversed(fresh):
        key = (s.site, s.host, s.number)
        per_key[key] += 1
        if per_key[key] <= MAX_SAMPLES_PER_KEY:
            kept.append(s)
    return tuple(reversed(kept))


def _ser(answered: int, attempted: int, redirected: int) -> float | None:
    denominator = attempted - redirected
    return answered / denominator if denominator > 0 else None


def number_figures(number: str, samples: Sequence[ProbeSample], *, ser_min: float) -> NumberFigures:
    """One number's figures over the window, with the hosts that fail it on their own."""
    calls = sum(s.attempted for s in samples)
    answered = sum(s.answered for s in samples)
    redirected = sum(s.redirected for s in samples)
    causes: Counter[str] = Counter()
    for s in samples:
        causes.update(s.causes)
    failing_hosts = []
    for host in sorted({s.host for s in samples}):
        mine = [s for s in samples if s.host == host]
        host_ser = _ser(sum(s.answered for s in mine), sum(s.attempted for s in mine), sum(s.redirected for s in mine))
        if host_ser is not None and host_ser < ser_min:
            failing_hosts.append(host)
    return NumberFigures(number=number, calls=calls, answered=answered, ser=_ser(answered, calls, redirected),
                         asr=answered / calls if calls else None,
                         srd_p95_ms=percentile([x for s in samples for x in s.srd_ms], 95),
                         causes=dict(sorted(causes.items())), failing_hosts=tuple(failing_hosts))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _cause_text(causes: Mapping[str, int]) -> str:
    top = sorted(causes.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return ", ".join(f"{code} x{n}" for code, n in top)


def assess_site(*, site: str, numbers: Sequence[str], samples: Sequence[ProbeSample], live: LiveSample | None,
                policy: WatchPolicy) -> SiteAssessment:
    """The site's verdict over the window.

    `fail` as soon as one figure with enough data crosses its threshold; `ok` only when every
    number had enough probe calls and passed (live figures may be missing: a drained site
    takes no live call); `unknown` otherwise."""
    codes: list[str] = []
    reasons: list[str] = []
    failing: list[str] = []
    figures: list[NumberFigures] = []
    every_number_judged = True
    for number in numbers:
        fig = number_figures(number, [s for s in samples if s.site == site and s.number == number],
                             ser_min=policy.ser_min)
        figures.append(fig)
        if fig.calls < policy.min_probe_calls:
            every_number_judged = False
            continue
        where = f" (hosts {', '.join(fig.failing_hosts)})" if fig.failing_hosts else ""
        if fig.ser is not None and fig.ser < policy.ser_min:
            failing.append(number)
            codes.append(f"ser:{number}")
            reasons.append(f"{number}: SER {_pct(fig.ser)} < {_pct(policy.ser_min)} over {fig.calls} probe calls"
                           f"{where}; {_cause_text(fig.causes)}")
        if fig.srd_p95_ms is not None and fig.srd_p95_ms > policy.srd_p95_max_ms:
            if number not in failing:
                failing.append(number)
            codes.append(f"srd:{number}")
            reasons.append(f"{number}: setup delay p95 {fig.srd_p95_ms:.0f} ms > {policy.srd_p95_max_ms:.0f} ms")
    live_asr = live_srd = live_calls = None
    if live is not None:
        live_calls = live.attempts
        live_srd = live.srd_p95_ms
        if live.attempts >= max(policy.min_live_calls, 1e-9):
            live_asr = min(1.0, live.answered / live.attempts)
            if live_asr < policy.asr_min:
                codes.append("live_asr")
                reasons.append(f"live ASR {_pct(live_asr)} < {_pct(policy.asr_min)} over {live.attempts:.0f} calls "
                               f"({live.failed:.0f} failed)")
            if live_srd is not None and live_srd > policy.live_srd_p95_max_ms:
                codes.append("live_srd")
                reasons.append(f"live setup delay p95 {live_srd:.0f} ms > {policy.live_srd_p95_max_ms:.0f} ms")
    status: Status = "fail" if codes else "ok" if every_number_judged else "unknown"
    return SiteAssessment(site=site, status=status, failing_numbers=tuple(failing), codes=tuple(codes),
                          reasons=tuple(reasons), numbers=tuple(figures), live_calls=live_calls, live_asr=live_asr,
                          live_srd_p95_ms=live_srd)
