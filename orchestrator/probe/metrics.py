"""RFC 6076 call metrics from call counts: pure functions, no I/O.

SER  session establishment ratio: answered / (attempts not answered 3xx)
ISA  ineffective session attempts: (408, 500, 503, 504 or timeout) / attempts
SRD  session request delay: INVITE to final answer, reported p50/p95/max (ms)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from orchestrator.sipp.scenarios import CallStats

ISA_CAUSES = frozenset({"408", "500", "503", "504", "timeout"})


class NumberResult(BaseModel):
    """Probe figures for one emergency number (through one host, or a whole site)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    site: str
    host: str | None
    number: str
    attempted: int
    answered: int
    failed: int
    failures: dict[str, int]
    ser: float | None
    isa: float | None
    srd_p50_ms: float | None
    srd_p95_ms: float | None
    srd_max_ms: float | None
    retransmissions: int


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def merge(stats: Iterable[CallStats]) -> CallStats:
    """Add several runs' counts together (e.g. the hosts of a site)."""
    items = list(stats)
    failures: Counter[str] = Counter()
    for s in items:
        failures.update(s.failures)
    return CallStats(attempted=sum(s.attempted for s in items), answered=sum(s.answered for s in items),
                     failed=sum(s.failed for s in items), in_flight=sum(s.in_flight for s in items),
                     failures=dict(failures), srd_ms=tuple(x for s in items for x in s.srd_ms),
                     retransmissions=sum(s.retransmissions for s in items))


def ser(stats: CallStats) -> float | None:
    """Session establishment ratio; None when nothing was attempted."""
    redirected = sum(n for code, n in stats.failures.items() if code.startswith("3"))
    denominator = stats.attempted - redirected
    return stats.answered / denominator if denominator > 0 else None


def isa(stats: CallStats) -> float | None:
    """Ineffective session attempts ratio; None when nothing was attempted."""
    if stats.attempted <= 0:
        return None
    return sum(n for code, n in stats.failures.items() if code in ISA_CAUSES) / stats.attempted


def number_result(*, site: str, host: str | None, number: str, stats: CallStats) -> NumberResult:
    """The figures reported for one number."""
    return NumberResult(
        site=site, host=host, number=number, attempted=stats.attempted, answered=stats.answered,
        failed=stats.failed, failures=dict(sorted(stats.failures.items())), ser=ser(stats),
        isa=isa(stats), srd_p50_ms=percentile(stats.srd_ms, 50), srd_p95_ms=percentile(stats.srd_ms, 95),
        srd_max_ms=max(stats.srd_ms) if stats.srd_ms else None, retransmissions=stats.retransmissions)
