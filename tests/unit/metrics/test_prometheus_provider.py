"""The Prometheus provider against a fake HTTP API: parsing, figures, and every way of
failing (unreachable, PromQL error, no data, garbage) being an error, never a zero."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from orchestrator.errors import InvalidInput, RemoteError, ToolMissing
from orchestrator.estate.model import Estate
from orchestrator.metrics import promql
from orchestrator.metrics.prometheus import PrometheusProvider, parse_vector, provider_for
from orchestrator.metrics.provider import LiveWindow, MetricsProvider
from tests.unit.metrics.conftest import FakePrometheus, vector_doc


def _answer_site(fake: FakePrometheus, site: str, *, attempts: str, answered: str, failed: str,
                 p50: str = "0.0015", p95: str = "0.004", window_s: float = 10) -> None:
    q = promql.site_queries(site=site, window_s=window_s)
    fake.vector(q["attempts"], ({}, attempts))
    fake.vector(q["answered"], ({}, answered))
    fake.vector(q["failed"], ({}, failed))
    fake.vector(q["srd_p50_s"], ({}, p50))
    fake.vector(q["srd_p95_s"], ({}, p95))
    fake.vector(promql.codes_query(site=site, window_s=window_s), ({"code": "200"}, answered),
                ({"code": "503"}, failed), ({"code": "408"}, "0"))


def test_site_window_reads_the_figures_and_keeps_the_queries(fake_prometheus: FakePrometheus,
                                                              estate: Estate) -> None:
    _answer_site(fake_prometheus, "site1", attempts="200.00000001", answered="195", failed="5")
    provider = PrometheusProvider(base_url=fake_prometheus.url + "/", estate=estate, timeout=2)
    w = provider.site_window(site="site1", window_s=10, end=1700000000.5)
    assert isinstance(w, LiveWindow)
    assert (w.attempts, w.answered, w.failed) == (200.0, 195.0, 5.0)
    assert w.failure_ratio == pytest.approx(0.025)
    assert (w.srd_p50_ms, w.srd_p95_ms) == (1.5, 4.0)
    assert w.codes == {"200": 195.0, "503": 5.0}
    assert w.queries["attempts"] == promql.site_queries(site="site1", window_s=10)["attempts"]
    assert "codes" in w.queries
    assert w.end == 1700000000.5
    # every query asked for the same instant: canary and baseline compare one window
    assert {s["time"] for s in fake_prometheus.seen} == {"1700000000.500"}
    assert {s["path"] for s in fake_prometheus.seen} == {"/api/v1/query"}


def test_no_attempts_gives_no_ratio_and_no_delay(fake_prometheus: FakePrometheus, estate: Estate) -> None:
    _answer_site(fake_prometheus, "site2", attempts="0", answered="0", failed="0", p50="NaN", p95="NaN")
    w = PrometheusProvider(base_url=fake_prometheus.url, estate=estate).site_window(site="site2", window_s=10)
    assert w.attempts == 0 and w.failure_ratio is None
    assert w.srd_p50_ms is None and w.srd_p95_ms is None
    assert w.codes == {}


def test_an_empty_answer_for_a_count_is_no_data_not_zero(fake_prometheus: FakePrometheus, estate: Estate) -> None:
    provider = PrometheusProvider(base_url=fake_prometheus.url, estate=estate)
    with pytest.raises(RemoteError, match="has no data for site site1") as err:
        provider.site_window(site="site1", window_s=10)
    assert "kamailio_edge_invites_total" in err.value.message


def test_a_promql_error_is_reported_with_prometheus_own_words(fake_prometheus: FakePrometheus,
                                                              estate: Estate) -> None:
    q = promql.site_queries(site="site1", window_s=10)["attempts"]
    fake_prometheus.answers[q] = (400, {"status": "error", "errorType": "bad_data",
                                        "error": "parse error: unexpected end of input"})
    with pytest.raises(RemoteError, match=r"HTTP 400.*parse error: unexpected end of input"):
        PrometheusProvider(base_url=fake_prometheus.url, estate=estate).site_window(site="site1", window_s=10)


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", {"status": "error", "error": "boom"},
                                  {"status": "success", "data": {"resultType": "matrix", "result": []}},
                                  {"status": "success", "data": {"resultType": "vector",
                                                                 "result": [{"metric": {}}]}}])
def test_answers_that_are_not_an_instant_vector_are_errors(fake_prometheus: FakePrometheus, estate: Estate,
                                                           body: object) -> None:
    fake_prometheus.default = (200, body)
    with pytest.raises(RemoteError, match="Prometheus at"):
        PrometheusProvider(base_url=fake_prometheus.url, estate=estate).site_window(site="site1", window_s=10)


def test_several_series_where_one_sum_is_expected_is_an_error(fake_prometheus: FakePrometheus,
                                                              estate: Estate) -> None:
    q = promql.site_queries(site="site1", window_s=10)["attempts"]
    fake_prometheus.answers[q] = (200, vector_doc("1", "2"))
    with pytest.raises(RemoteError, match="2 series"):
        PrometheusProvider(base_url=fake_prometheus.url, estate=estate).site_window(site="site1", window_s=10)


@pytest.fixture()
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield port  # nothing listens there any more: connections are refused


def test_unreachable_server_is_a_remote_error(closed_port: int, estate: Estate,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestrator.metrics.prometheus.shutil.which", lambda name: "/usr/bin/" + name)
    provider = PrometheusProvider(base_url=f"http://127.0.0.1:{closed_port}", estate=estate, timeout=1)
    with pytest.raises(RemoteError, match="unreachable"):
        provider.check()
    with pytest.raises(RemoteError, match="unreachable"):
        provider.site_window(site="site1", window_s=10)


def test_lab_server_refusing_because_prometheus_is_not_installed_is_a_missing_tool(
        closed_port: int, estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestrator.metrics.prometheus.shutil.which", lambda name: None)
    with pytest.raises(ToolMissing, match="prometheus is not installed"):
        PrometheusProvider(base_url=f"http://127.0.0.1:{closed_port}", estate=estate).check()
    production = estate.model_copy(update={"lab": False})
    with pytest.raises(RemoteError, match="unreachable"):
        PrometheusProvider(base_url=f"http://127.0.0.1:{closed_port}", estate=production).check()


def test_a_server_that_never_answers_times_out_as_a_remote_error(estate: Estate) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(RemoteError, match="unreachable"):
            PrometheusProvider(base_url=url, estate=estate, timeout=0.2).check()


def test_check_passes_when_every_site_has_edge_series(fake_prometheus: FakePrometheus, estate: Estate) -> None:
    fake_prometheus.vector(promql.sites_present_query(), ({"site": "site1"}, "2"), ({"site": "site2"}, "2"),
                           ({"site": "elsewhere"}, "4"))
    PrometheusProvider(base_url=fake_prometheus.url, estate=estate).check()


def test_check_names_the_sites_without_data(fake_prometheus: FakePrometheus, estate: Estate) -> None:
    fake_prometheus.vector(promql.sites_present_query(), ({"site": "site1"}, "2"))
    with pytest.raises(RemoteError, match=r"no data for site\(s\) site2 of estate lab"):
        PrometheusProvider(base_url=fake_prometheus.url, estate=estate).check()
    fake_prometheus.answers.clear()
    with pytest.raises(RemoteError, match=r"site\(s\) site1, site2"):
        PrometheusProvider(base_url=fake_prometheus.url, estate=estate).check()


def test_unknown_site_and_bad_url_are_invalid_input(fake_prometheus: FakePrometheus, estate: Estate) -> None:
    with pytest.raises(InvalidInput, match="no site 'site9'"):
        PrometheusProvider(base_url=fake_prometheus.url, estate=estate).site_window(site="site9", window_s=10)
    with pytest.raises(InvalidInput, match="http"):
        PrometheusProvider(base_url="127.0.0.1:9090", estate=estate)


def test_provider_for_uses_the_estate_metrics_url(estate: Estate) -> None:
    provider = provider_for(estate)
    assert provider.base_url == "http://198.18.99.3:9090"
    typed: MetricsProvider = provider  # the adapter satisfies the port (mypy checks this line)
    assert typed is provider
    with pytest.raises(InvalidInput, match="callfleet_metrics_url"):
        provider_for(estate.model_copy(update={"metrics_url": None}))


def test_parse_vector_reads_labels_and_special_values() -> None:
    doc = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"site": "a"}, "value": [1.0, "+Inf"]}, {"metric": {}, "value": [1.0, "3.5"]}]}}
    samples = parse_vector(doc, server="s", expr="e")
    assert samples[0][0] == {"site": "a"} and samples[0][1] == float("inf")
    assert samples[1] == ({}, 3.5)
