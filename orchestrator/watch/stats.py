"""Call statistics the watch keeps for the monthly report (pure: samples in, counts out).

Every round adds its calls to fixed UTC intervals (`stats_interval_s`, a divisor of an hour,
so an interval never straddles a day or a month), per site, number and source:

- `probe`: the watch's own synthetic calls (ProbeSample), per number, with each failure's
  cause (SIP code, `timeout`, `unreachable`);
- `live`: the public's calls counted at the edge (the metrics provider), per site only: the
  edge's counters carry no number label, so live rows are recorded under the number `all`.

Each cause is classified once, for ITU-T E.425 (docs/REGULATORY.md): ASR = answered /
seizures; NER = (answered + user busy + ring no answer + terminal rejection) / seizures.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from enum import StrEnum

from pydantic import Field

from orchestrator.watch.model import Frozen

ALL_NUMBERS = "all"  # the number of a live row: the edge does not split its counts by number
MIN_SPAN_S = 1.0  # the metrics provider's shortest window


class Source(StrEnum):
    """Whose calls: the watch's probes, or the public's (live, at the edge)."""

    PROBE = "probe"
    LIVE = "live"


class Outcome(StrEnum):
    """How a seizure ended, in E.425's terms."""

    ANSWERED = "answered"
    USER_BUSY = "user_busy"  # 486, 600
    NO_ANSWER = "no_answer"  # 480 (ring no answer)
    REJECTED = "rejected"  # 403, 603 (terminal rejection)
    ABANDONED = "abandoned"  # 487: the caller hung up first (counted by the edge apart from failures)
    REDIRECTED = "redirected"  # 3xx
    NETWORK_FAILURE = "network_failure"  # everything else: 408, 5xx, other 4xx/6xx, timeout, unreachable


# Outcomes E.425 counts as the network's success (NER's numerator).
NETWORK_EFFECTIVE = frozenset({Outcome.ANSWERED, Outcome.USER_BUSY, Outcome.NO_ANSWER, Outcome.REJECTED})
_BY_CODE = {"486": Outcome.USER_BUSY, "600": Outcome.USER_BUSY, "480": Outcome.NO_ANSWER,
            "403": Outcome.REJECTED, "603": Outcome.REJECTED, "487": Outcome.ABANDONED}


def classify(cause: str) -> Outcome:
    """The E.425 outcome of a failure cause (a SIP code, `timeout`, `unreachable`, ...)."""
    if cause in _BY_CODE:
        return _BY_CODE[cause]
    if len(cause) == 3 and cause.isdigit():
        if cause.startswith("2"):
            return Outcome.ANSWERED
        if cause.startswith("3"):
            return Outcome.REDIRECTED
    return Outcome.NETWORK_FAILURE


class Counts(Frozen):
    """Seizures and how they ended. Live counts come from Prometheus' `increase()` and are
    real numbers; probe counts are whole. `attempts` may exceed the outcomes' sum (calls
    still in progress, or an end the counters did not classify)."""

    attempts: float = Field(default=0, ge=0)
    answered: float = Field(default=0, ge=0)
    user_busy: float = Field(default=0, ge=0)
    no_answer: float = Field(default=0, ge=0)
    rejected: float = Field(default=0, ge=0)
    abandoned: float = Field(default=0, ge=0)
    redirected: float = Field(default=0, ge=0)
    network_failure: float = Field(default=0, ge=0)
    causes: dict[str, float] = Field(default_factory=dict)  # failures by raw cause (evidence)

    def outcome(self, o: Outcome) -> float:
        """The count of one outcome."""
        value: float = getattr(self, o.value)
        return value

    @property
    def effective(self) -> float:
        """E.425's network-effective seizures."""
        return sum(self.outcome(o) for o in NETWORK_EFFECTIVE)

    @property
    def unclassified(self) -> float:
        """Seizures with no outcome recorded (in progress when counted, or unknown)."""
        return max(0.0, self.attempts - sum(self.outcome(o) for o in Outcome))

    @property
    def asr(self) -> float | None:
        """Answer-seizure ratio; None without seizures."""
        return min(1.0, self.answered / self.attempts) if self.attempts > 0 else None

    @property
    def ner(self) -> float | None:
        """Network effectiveness ratio; None without seizures."""
        return min(1.0, self.effective / self.attempts) if self.attempts > 0 else None

    def __add__(self, other: Counts) -> Counts:
        causes: dict[str, float] = {}
        for c in (self.causes, other.causes):
            for k, v in c.items():
                causes[k] = causes.get(k, 0.0) + v
        fields = {o.value: self.outcome(o) + other.outcome(o) for o in Outcome}
        return Counts(attempts=self.attempts + other.attempts, causes={k: round(v, 3) for k, v in causes.items()},
                      **{k: round(v, 3) for k, v in fields.items()})


def total(counts: Iterable[Counts]) -> Counts:
    """The sum of several counts."""
    out = Counts()
    for c in counts:
        out = out + c
    return out


class Tally(Frozen):
    """One interval's counts for one site, number and source (a row of the store)."""

    start: float  # unix seconds, a multiple of `interval_s`
    interval_s: float = Field(gt=0)
    site: str
    number: str
    source: Source
    counts: Counts

    @property
    def key(self) -> tuple[float, str, str, Source]:
        """What identifies the row in the store."""
        return (self.start, self.site, self.number, self.source)


class LiveCount(Frozen):
    """A site's live calls over [start, end) as the metrics provider counted them at the edge."""

    site: str
    start: float
    end: float
    attempts: float = Field(ge=0)
    answered: float = Field(ge=0)
    failed: float = Field(ge=0)  # 4xx/5xx/6xx except 487, the edge's own 408 included
    codes: dict[str, float] = Field(default_factory=dict)  # final answers by SIP code


def bucket(at: float, interval_s: float) -> float:
    """The start of the interval `at` falls in."""
    return math.floor(at / interval_s) * interval_s


def probe_counts(attempted: int, answered: int, causes: dict[str, int]) -> Counts:
    """A probe sample's counts: every failure cause classified."""
    by: Counter[Outcome] = Counter()
    for cause, n in causes.items():
        by[classify(cause)] += n
    by[Outcome.ANSWERED] += answered
    return Counts(attempts=attempted, causes={k: float(v) for k, v in causes.items() if v},
                  **{o.value: float(by[o]) for o in Outcome})


def live_counts(c: LiveCount) -> Counts:
    """A live count's outcomes. The edge's `failed` is exact; its codes may miss the first
    occurrences of a code it had never seen, so busy/no-answer/rejection come from the codes and
    the rest of `failed` is a network failure."""
    codes = {k: v for k, v in c.codes.items() if v > 0}
    by: dict[Outcome, float] = dict.fromkeys(Outcome, 0.0)
    for code, n in codes.items():
        by[classify(code)] += n
    user_side = by[Outcome.USER_BUSY] + by[Outcome.NO_ANSWER] + by[Outcome.REJECTED]
    return Counts(attempts=c.attempts, answered=c.answered, user_busy=by[Outcome.USER_BUSY],
                  no_answer=by[Outcome.NO_ANSWER], rejected=by[Outcome.REJECTED], abandoned=by[Outcome.ABANDONED],
                  redirected=by[Outcome.REDIRECTED], network_failure=round(max(0.0, c.failed - user_side), 3),
                  causes={k: round(v, 3) for k, v in codes.items() if classify(k) is not Outcome.ANSWERED})


class ProbeCall(Frozen):
    """What the tally needs of a ProbeSample (decoupled from the core's model)."""

    site: str
    number: str
    at: float
    attempted: int = Field(ge=0)
    answered: int = Field(ge=0)
    causes: dict[str, int] = Field(default_factory=dict)


def tally_round(*, probes: Sequence[ProbeCall], live: Sequence[LiveCount], interval_s: float) -> list[Tally]:
    """One round's rows: probe samples summed per interval, site and number; live counts per
    interval and site (number `all`), in the interval holding the span's end (`live_spans` cuts
    spans at interval boundaries)."""
    rows: dict[tuple[float, str, str, Source], Counts] = {}
    for p in probes:
        key = (bucket(p.at, interval_s), p.site, p.number, Source.PROBE)
        rows[key] = rows.get(key, Counts()) + probe_counts(p.attempted, p.answered, p.causes)
    for c in live:
        key = (bucket(c.end - 1e-6, interval_s), c.site, ALL_NUMBERS, Source.LIVE)
        rows[key] = rows.get(key, Counts()) + live_counts(c)
    return [Tally(start=k[0], interval_s=interval_s, site=k[1], number=k[2], source=k[3], counts=v)
            for k, v in sorted(rows.items())]


def live_spans(*, since: float | None, now: float, interval_s: float, first_s: float,
               max_s: float) -> list[tuple[float, float]]:
    """The spans of live time to count this round: from where the last count ended (`since`;
    None: `first_s` back from now), at most `max_s` back, cut at interval boundaries so each
    span lies in one interval. A piece shorter than the provider's 1 s window is joined to
    the next piece (its calls counted one interval late, less than a second's worth); a last
    piece shorter than 1 s is left for the next round."""
    begin = now - first_s if since is None else max(since, now - max_s)
    if now - begin < MIN_SPAN_S:
        return []
    cuts = [begin]
    edge = bucket(begin, interval_s) + interval_s
    while edge < now:
        cuts.append(edge)
        edge += interval_s
    cuts.append(now)
    out: list[tuple[float, float]] = []
    carry: float | None = None
    for a, b in itertools.pairwise(cuts):
        begin_at = a if carry is None else carry
        carry = None
        if b - begin_at < MIN_SPAN_S:
            carry = begin_at
            continue
        out.append((begin_at, b))
    return out
