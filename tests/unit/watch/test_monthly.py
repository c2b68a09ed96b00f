"""The call statistics and the monthly report, pure: E.425 classes and ratios, UTC intervals
and months, live spans, threshold crossings from each number's policy values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.policy.watch import E425Policy, E425Threshold, WatchPolicy
from orchestrator.watch.monthly import Metric, Scope, build_monthly, parse_month
from orchestrator.watch.stats import (
    ALL_NUMBERS,
    Counts,
    LiveCount,
    Outcome,
    ProbeCall,
    Source,
    Tally,
    classify,
    live_counts,
    live_spans,
    probe_counts,
    tally_round,
)


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


NOV = parse_month("2026-11")
T = ts(2026, 11, 10, 12, 0)


@pytest.mark.parametrize(("cause", "outcome"), [
    ("200", Outcome.ANSWERED), ("486", Outcome.USER_BUSY), ("600", Outcome.USER_BUSY), ("480", Outcome.NO_ANSWER),
    ("403", Outcome.REJECTED), ("603", Outcome.REJECTED), ("487", Outcome.ABANDONED), ("302", Outcome.REDIRECTED),
    ("408", Outcome.NETWORK_FAILURE), ("503", Outcome.NETWORK_FAILURE), ("500", Outcome.NETWORK_FAILURE),
    ("404", Outcome.NETWORK_FAILURE), ("timeout", Outcome.NETWORK_FAILURE), ("unreachable", Outcome.NETWORK_FAILURE),
])
def test_every_cause_has_one_e425_class(cause: str, outcome: Outcome) -> None:
    assert classify(cause) is outcome


def test_asr_and_ner_follow_e425() -> None:
    # 100 seizures: 80 answered, 5 busy, 4 ring-no-answer, 1 rejected, 7 x 503, 3 timeouts
    c = probe_counts(100, 80, {"486": 5, "480": 4, "603": 1, "503": 7, "timeout": 3})
    assert (c.attempts, c.answered, c.user_busy, c.no_answer, c.rejected, c.network_failure) == (100, 80, 5, 4, 1, 10)
    assert c.asr == pytest.approx(0.80)
    assert c.ner == pytest.approx(0.90)  # (80 + 5 + 4 + 1) / 100
    assert c.unclassified == 0
    assert Counts().asr is None and Counts().ner is None
    both = c + c
    assert both.attempts == 200 and both.asr == pytest.approx(0.8) and both.causes["503"] == 14


def test_live_counts_take_failures_from_the_edge_and_user_side_causes_from_codes() -> None:
    c = live_counts(LiveCount(site="site1", start=T, end=T + 30, attempts=50, answered=40, failed=8,
                              codes={"200": 40, "486": 2, "503": 5, "487": 1}))
    assert (c.answered, c.user_busy, c.network_failure, c.abandoned) == (40, 2, 6, 1)  # 8 failed - 2 busy
    assert c.asr == pytest.approx(0.8) and c.ner == pytest.approx(42 / 50)
    assert "200" not in c.causes


def test_a_round_is_summed_per_interval_site_number_and_source() -> None:
    probes = [ProbeCall(site="site1", number="112", at=T + 10, attempted=5, answered=5),
              ProbeCall(site="site1", number="112", at=T + 10, attempted=5, answered=3, causes={"503": 2}),
              ProbeCall(site="site2", number="15", at=T + 10, attempted=5, answered=5)]
    live = [LiveCount(site="site1", start=T, end=T + 30, attempts=10, answered=10, failed=0)]
    rows = tally_round(probes=probes, live=live, interval_s=300)
    by = {(r.site, r.number, r.source): r for r in rows}
    assert set(by) == {("site1", "112", Source.PROBE), ("site2", "15", Source.PROBE),
                       ("site1", ALL_NUMBERS, Source.LIVE)}
    assert by["site1", "112", Source.PROBE].counts.attempts == 10
    assert by["site1", "112", Source.PROBE].counts.network_failure == 2
    assert all(r.start == T for r in rows)  # 12:00:10 is in the 12:00 interval


def test_live_spans_follow_on_and_are_cut_at_interval_boundaries() -> None:
    # first round: one policy interval back
    assert live_spans(since=None, now=T + 20, interval_s=300, first_s=30, max_s=3600) == [(T - 10, T), (T, T + 20)]
    assert live_spans(since=T + 20, now=T + 50, interval_s=300, first_s=30, max_s=3600) == [(T + 20, T + 50)]
    # a long gap: at most max_s back, one span per interval
    spans = live_spans(since=T - 7200, now=T + 50, interval_s=300, first_s=30, max_s=600)
    assert spans == [(T - 550, T - 300), (T - 300, T), (T, T + 50)]
    # under a second before a boundary: joined to the next piece; a sub-second tail waits
    assert live_spans(since=T - 0.4, now=T + 30, interval_s=300, first_s=30, max_s=3600) == [(T - 0.4, T + 30)]
    assert live_spans(since=T + 30, now=T + 30.5, interval_s=300, first_s=30, max_s=3600) == []
    # the joined piece lands in the interval of its end
    rows = tally_round(probes=[], live=[LiveCount(site="s", start=T - 0.4, end=T + 30, attempts=1, answered=1,
                                                  failed=0)], interval_s=300)
    assert rows[0].start == T


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026-11", ts(2026, 11, 1), ts(2026, 12, 1)),
    ("2026-12", ts(2026, 12, 1), ts(2027, 1, 1)),
    ("2024-02", ts(2024, 2, 1), ts(2024, 3, 1)),
])
def test_months_are_utc(text: str, start: float, end: float) -> None:
    m = parse_month(text)
    assert (m.label, m.start, m.end) == (text, start, end)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "26-11", "2026/11", "november", "", "2026-1"])
def test_a_bad_month_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="YYYY-MM"):
        parse_month(text)


def row(start: float, site: str, number: str, attempts: int, answered: int, *, source: Source = Source.PROBE,
        causes: dict[str, int] | None = None) -> Tally:
    causes = causes if causes is not None else ({"503": attempts - answered} if attempts > answered else {})
    return Tally(start=start, interval_s=300, site=site, number=number, source=source,
                 counts=probe_counts(attempts, answered, causes))


POLICY = E425Policy(default=E425Threshold(asr_min=0.9, ner_min=0.95, min_attempts=20),
                    numbers={"112": E425Threshold(asr_min=0.99, ner_min=0.99, min_attempts=20)})


def test_the_month_keeps_its_own_intervals_only_and_lists_every_number() -> None:
    rows = [row(NOV.start - 300, "site1", "112", 50, 0),  # 31 Oct 23:55 UTC: October's
            row(NOV.start, "site1", "112", 40, 40),  # 1 Nov 00:00 UTC: November's
            row(NOV.end - 300, "site2", "112", 60, 60),  # 30 Nov 23:55: November's
            row(NOV.end, "site1", "112", 50, 0)]  # 1 Dec 00:00: December's
    report = build_monthly(rows, month=NOV, policy=POLICY, numbers=["15", "17", "18", "112", "114"])
    probe = {n.number: n for n in report.numbers if n.source is Source.PROBE}
    assert list(probe) == ["15", "17", "18", "112", "114"]
    assert probe["112"].figures.attempts == 100 and probe["112"].figures.asr == 1.0
    assert [s.site for s in probe["112"].sites] == ["site1", "site2"]
    assert probe["15"].figures.attempts == 0 and probe["15"].figures.asr is None
    assert probe["114"].threshold == POLICY.default and probe["112"].threshold.asr_min == 0.99
    assert report.crossings == () and report.start == "2026-11-01T00:00:00Z" and report.end == "2026-12-01T00:00:00Z"
    assert report.interval_s == 300


def test_asr_per_number_over_sites_and_intervals() -> None:
    rows = [row(T, "site1", "17", 30, 27), row(T, "site2", "17", 30, 30), row(T + 300, "site1", "17", 40, 39)]
    n = next(x for x in build_monthly(rows, month=NOV, policy=POLICY).numbers if x.number == "17")
    assert n.figures.attempts == 100 and n.figures.answered == 96 and n.figures.asr == pytest.approx(0.96)
    assert n.intervals == 2 and n.judged == 2


def test_crossings_are_runs_of_intervals_below_the_numbers_own_threshold() -> None:
    rows = [row(T, "site1", "112", 50, 50),
            row(T + 300, "site1", "112", 50, 49),  # 0.98 < 0.99 for 112 ...
            row(T + 600, "site1", "112", 50, 40),  # ... 0.80, the same run
            row(T + 900, "site1", "112", 50, 50),  # good: the run ends
            row(T + 1200, "site1", "112", 10, 0),  # too few seizures to judge
            row(T, "site1", "18", 50, 49)]  # 0.98 is fine for 18 (default 0.9)
    report = build_monthly(rows, month=NOV, policy=POLICY)
    runs = [c for c in report.crossings if c.scope is Scope.INTERVALS]
    asr = [c for c in runs if c.metric is Metric.ASR]
    assert [(c.number, c.start, c.end, c.intervals, c.worst, c.attempts) for c in asr] == \
        [("112", T + 300, T + 900, 2, 0.8, 100)]
    assert {c.number for c in report.crossings} == {"112"}
    assert [c.metric for c in runs] == [Metric.ASR, Metric.NER]  # 503s are network failures: NER falls too
    month = [c for c in report.crossings if c.scope is Scope.MONTH]
    assert {(c.metric, c.worst) for c in month} == {(Metric.ASR, 0.945), (Metric.NER, 0.945)}  # 189/200


def test_busy_callers_lower_asr_but_not_ner() -> None:
    rows = [row(T, "site1", "15", 100, 85, causes={"486": 15})]
    report = build_monthly(rows, month=NOV, policy=POLICY)
    assert {(c.metric, c.scope) for c in report.crossings} == {(Metric.ASR, Scope.INTERVALS), (Metric.ASR, Scope.MONTH)}


def test_a_gap_splits_runs_and_live_counts_are_reported_under_all() -> None:
    rows = [row(T, "site1", "17", 50, 10), row(T + 900, "site1", "17", 50, 10),
            row(T, "site3", ALL_NUMBERS, 100, 99, source=Source.LIVE)]
    report = build_monthly(rows, month=NOV, policy=POLICY)
    assert len([c for c in report.crossings if c.metric is Metric.ASR and c.scope is Scope.INTERVALS]) == 2
    live = [n for n in report.numbers if n.source is Source.LIVE]
    assert [(n.number, n.figures.attempts, n.threshold) for n in live] == [(ALL_NUMBERS, 100, POLICY.default)]


def test_the_policy_lists_the_french_numbers_and_an_interval_dividing_an_hour() -> None:
    assert set(WatchPolicy().e425.numbers) == {"15", "17", "18", "112"}
    with pytest.raises(ValueError, match="divide an hour"):
        WatchPolicy(stats_interval_s=7 * 60)
    with pytest.raises(ValueError):
        E425Policy(numbers={"not a number": E425Threshold()})
