"""PromQL building: one query per LiveWindow figure, site names checked, durations exact."""

from __future__ import annotations

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.metrics import promql


def test_site_queries_sum_the_edge_counters_of_the_site_over_the_window() -> None:
    q = promql.site_queries(site="site3", window_s=10)
    assert q["attempts"] == 'sum(increase(kamailio_edge_invites_total{site="site3"}[10000ms]))'
    assert q["answered"] == 'sum(increase(kamailio_edge_answered_total{site="site3"}[10000ms]))'
    assert q["failed"] == 'sum(increase(kamailio_edge_failed_total{site="site3"}[10000ms]))'
    assert q["srd_p95_s"] == ('histogram_quantile(0.95, sum by (le) '
                              '(increase(kamailio_edge_srd_seconds_bucket{site="site3"}[10000ms])))')
    assert q["srd_p50_s"].startswith("histogram_quantile(0.5, ")


def test_window_durations_are_whole_milliseconds() -> None:
    assert promql.duration(2.5) == "2500ms"
    assert promql.duration(60) == "60000ms"
    assert promql.duration(1.0004) == "1000ms"


@pytest.mark.parametrize("window", [0, 0.5, -3, float("nan"), float("inf")])
def test_too_short_or_bogus_windows_are_refused(window: float) -> None:
    with pytest.raises(InvalidInput, match="window"):
        promql.site_queries(site="site1", window_s=window)


@pytest.mark.parametrize("site", ['site1"} or vector(1) #', "a b", "", "x" * 200])
def test_site_names_that_would_change_the_query_are_refused(site: str) -> None:
    with pytest.raises(InvalidInput, match="label value"):
        promql.site_queries(site=site, window_s=10)


def test_codes_and_presence_queries() -> None:
    assert promql.codes_query(site="paris", window_s=5) == (
        'sum by (code) (increase(kamailio_edge_replies_total{site="paris"}[5000ms]))')
    assert promql.sites_present_query() == "count by (site) (kamailio_edge_invites_total)"
