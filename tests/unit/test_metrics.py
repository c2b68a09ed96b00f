"""RFC 6076 metrics from call counts."""

from __future__ import annotations

from orchestrator.probe import metrics
from orchestrator.sipp.scenarios import CallStats


def test_ser_excludes_redirects_and_isa_counts_only_ineffective_causes() -> None:
    stats = CallStats(attempted=100, answered=90, failed=10,
                      failures={"302": 2, "503": 3, "404": 1, "timeout": 4})
    assert metrics.ser(stats) == 90 / 98
    assert metrics.isa(stats) == 7 / 100


def test_no_attempts_gives_no_ratio_rather_than_a_perfect_one() -> None:
    empty = CallStats(attempted=0, answered=0, failed=0)
    assert metrics.ser(empty) is None
    assert metrics.isa(empty) is None
    assert metrics.percentile([], 95) is None


def test_percentiles_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert metrics.percentile(values, 50) == 50
    assert metrics.percentile(values, 95) == 95
    assert metrics.percentile([7.0], 95) == 7.0


def test_merge_adds_hosts_together() -> None:
    a = CallStats(attempted=10, answered=9, failed=1, failures={"503": 1}, srd_ms=(1.0, 2.0))
    b = CallStats(attempted=5, answered=5, failed=0, srd_ms=(3.0,), retransmissions=2)
    m = metrics.merge([a, b])
    assert (m.attempted, m.answered, m.failed, m.retransmissions) == (15, 14, 1, 2)
    r = metrics.number_result(site="s", host=None, number="15", stats=m)
    assert r.srd_max_ms == 3.0 and r.failures == {"503": 1}
