"""The monthly emergency-call statistics (pure: the watch's interval counts in, a report out).

CPCE D.98-8-9/D.98-8-10 ask for monthly call statistics and alert thresholds on the ITU-T
E.425 ratios per emergency number (docs/REGULATORY.md). Per number and source (the watch's
probes; the public's live calls at the edge, which are per site only, number `all`): the
month's seizures by outcome, ASR and NER, per site and in total; and the threshold
crossings: runs of consecutive intervals whose all-sites ratio fell below the number's
policy threshold (intervals with fewer seizures than `min_attempts` are not judged), and
the month as a whole below it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import Field

from orchestrator.errors import InvalidInput
from orchestrator.policy.watch import E425Policy, E425Threshold
from orchestrator.watch.model import Frozen
from orchestrator.watch.stats import ALL_NUMBERS, Counts, Source, Tally, total

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class Month(Frozen):
    """A calendar month in UTC: [start, end) in unix seconds."""

    label: str  # YYYY-MM
    start: float
    end: float


def parse_month(text: str) -> Month:
    """`YYYY-MM` as a UTC month; InvalidInput (exit 2) for anything else."""
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise InvalidInput(f"--month {text!r}: expected YYYY-MM (e.g. 2026-01)")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return Month(label=f"{year:04d}-{month:02d}", start=start.timestamp(), end=end.timestamp())


class Metric(StrEnum):
    """The E.425 ratio a threshold bounds."""

    ASR = "asr"
    NER = "ner"


class Scope(StrEnum):
    """A crossing over a run of intervals, or over the whole month."""

    INTERVALS = "intervals"
    MONTH = "month"


class Figures(Frozen):
    """Seizures by outcome and the E.425 ratios, for one number (and site) over the month."""

    attempts: float
    answered: float
    user_busy: float
    no_answer: float
    rejected: float
    abandoned: float
    redirected: float
    network_failure: float
    unclassified: float
    asr: float | None
    ner: float | None
    causes: dict[str, float] = Field(default_factory=dict)


def figures(c: Counts) -> Figures:
    """The report's view of counts (ratios rounded to 5 decimals)."""
    return Figures(attempts=c.attempts, answered=c.answered, user_busy=c.user_busy, no_answer=c.no_answer,
                   rejected=c.rejected, abandoned=c.abandoned, redirected=c.redirected,
                   network_failure=c.network_failure, unclassified=round(c.unclassified, 3),
                   asr=None if c.asr is None else round(c.asr, 5), ner=None if c.ner is None else round(c.ner, 5),
                   causes=dict(sorted(c.causes.items())))


class SiteFigures(Frozen):
    """One site's share of a number's month."""

    site: str
    figures: Figures


class Crossing(Frozen):
    """A ratio below its threshold: over `start`..`end` (consecutive intervals), or the month."""

    number: str
    source: Source
    metric: Metric
    scope: Scope
    threshold: float
    start: float  # unix seconds
    end: float
    intervals: int  # intervals below the threshold in the run (the month: intervals judged)
    worst: float  # the lowest ratio of the run (the month's ratio for a month crossing)
    attempts: float  # seizures in the run


class NumberMonth(Frozen):
    """One number (or `all`, the live calls) from one source over the month."""

    number: str
    source: Source
    threshold: E425Threshold
    figures: Figures
    sites: tuple[SiteFigures, ...] = ()
    intervals: int  # intervals with counts
    judged: int  # of them, with at least `min_attempts` seizures


class MonthlyReport(Frozen):
    """`callfleet report monthly --json`: the month's emergency-call statistics per number."""

    month: str
    start: str  # ISO 8601, UTC
    end: str
    interval_s: float | None  # the statistics' interval (None: no data)
    journal: str
    numbers: tuple[NumberMonth, ...]
    crossings: tuple[Crossing, ...]
    notes: tuple[str, ...] = ()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _crossings(number: str, source: Source, per_interval: Sequence[tuple[float, float, Counts]],
               threshold: E425Threshold) -> list[Crossing]:
    """Runs of consecutive judged intervals below each threshold (intervals in order)."""
    out: list[Crossing] = []
    for metric, limit in ((Metric.ASR, threshold.asr_min), (Metric.NER, threshold.ner_min)):
        run: list[tuple[float, float, float, float]] = []  # start, end, ratio, attempts

        def close(run: list[tuple[float, float, float, float]], metric: Metric = metric,
                  limit: float = limit) -> None:
            if run:
                out.append(Crossing(number=number, source=source, metric=metric, scope=Scope.INTERVALS,
                                    threshold=limit, start=run[0][0], end=run[-1][1], intervals=len(run),
                                    worst=round(min(r[2] for r in run), 5),
                                    attempts=round(sum(r[3] for r in run), 3)))

        for start, end, c in per_interval:
            ratio = c.asr if metric is Metric.ASR else c.ner
            judged = c.attempts >= threshold.min_attempts and ratio is not None
            if judged and ratio is not None and ratio < limit:
                if run and run[-1][1] != start:  # a gap (no counts): a new run
                    close(run)
                    run = []
                run.append((start, end, ratio, c.attempts))
            else:
                # A good interval ends the run; so does an unjudged one (too few seizures: nothing
                # says the ratio stayed low).
                close(run)
                run = []
        close(run)
    return out


def build_monthly(rows: Iterable[Tally], *, month: Month, policy: E425Policy, numbers: Sequence[str] = (),
                  journal: str = "", notes: Sequence[str] = ()) -> MonthlyReport:
    """The month's report from the statistics rows (rows outside the month are ignored).

    Every number of `numbers` (the estate's) and of the policy appears, with zero seizures when
    nothing was recorded for it, for each source that has rows in the month (probes at least)."""
    inside = [r for r in rows if month.start <= r.start < month.end]
    interval = max((r.interval_s for r in inside), default=None)
    sources = sorted({r.source for r in inside} | {Source.PROBE}, key=list(Source).index)
    wanted = list(dict.fromkeys([*numbers, *policy.numbers]))
    out: list[NumberMonth] = []
    crossings: list[Crossing] = []
    for source in sources:
        mine = [r for r in inside if r.source is source]
        keys = [ALL_NUMBERS] if source is Source.LIVE else \
            list(dict.fromkeys([*wanted, *sorted({r.number for r in mine})]))
        for number in keys:
            rows_n = [r for r in mine if r.number == number]
            threshold = policy.for_number(number)
            by_site: dict[str, list[Counts]] = {}
            by_interval: dict[tuple[float, float], list[Counts]] = {}
            for r in rows_n:
                by_site.setdefault(r.site, []).append(r.counts)
                by_interval.setdefault((r.start, r.start + r.interval_s), []).append(r.counts)
            month_counts = total(r.counts for r in rows_n)
            per_interval = [(a, b, total(cs)) for (a, b), cs in sorted(by_interval.items())]
            judged = [c for _, _, c in per_interval if c.attempts >= threshold.min_attempts]
            out.append(NumberMonth(number=number, source=source, threshold=threshold, figures=figures(month_counts),
                                   sites=tuple(SiteFigures(site=s, figures=figures(total(cs)))
                                               for s, cs in sorted(by_site.items())),
                                   intervals=len(per_interval), judged=len(judged)))
            crossings += _crossings(number, source, per_interval, threshold)
            if judged:
                judged_total = total(judged)
                for metric, limit, ratio in ((Metric.ASR, threshold.asr_min, judged_total.asr),
                                             (Metric.NER, threshold.ner_min, judged_total.ner)):
                    if ratio is not None and ratio < limit:
                        crossings.append(Crossing(number=number, source=source, metric=metric, scope=Scope.MONTH,
                                                  threshold=limit, start=month.start, end=month.end,
                                                  intervals=len(judged), worst=round(ratio, 5),
                                                  attempts=judged_total.attempts))
    crossings.sort(key=lambda c: (c.start, c.number, c.source.value, c.metric.value))
    return MonthlyReport(month=month.label, start=_iso(month.start), end=_iso(month.end), interval_s=interval,
                         journal=journal, numbers=tuple(out), crossings=tuple(crossings), notes=tuple(notes))
