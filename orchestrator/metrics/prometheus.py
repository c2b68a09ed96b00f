"""Prometheus adapter of the metrics-provider port: instant queries on the HTTP API.

`GET <base_url>/api/v1/query?query=...&time=...` with the standard library only.
Every failure is a RemoteError naming the server and the query: refused connection,
timeout, an HTTP or PromQL error, an answer that is not a vector, and an empty
answer where the estate must have data. None of them ever becomes a zero.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from orchestrator.errors import InvalidInput, RemoteError, ToolMissing
from orchestrator.estate.model import Estate
from orchestrator.metrics import promql
from orchestrator.metrics.provider import LiveWindow

Sample = tuple[dict[str, str], float]


class PrometheusProvider:
    """Live figures of an estate from a Prometheus server scraping the edge's xhttp_prom."""

    def __init__(self, *, base_url: str, estate: Estate, timeout: float = 5.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"metrics URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.estate = estate
        self.timeout = timeout

    def query(self, expr: str, *, at: float | None = None) -> list[Sample]:
        """Run one instant query; the samples of its vector result (labels, value)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.base_url}/api/v1/query?{urllib.parse.urlencode(params)}"
        return parse_vector(self._get(url, expr), server=self.base_url, expr=expr)

    def _get(self, url: str, expr: str) -> Any:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            # Prometheus answers bad queries with 400/422 and a JSON error body.
            detail = _error_detail(exc.read())
            raise RemoteError(f"Prometheus at {self.base_url}: HTTP {exc.code} for {expr!r}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            self._missing_binary()
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"Prometheus at {self.base_url} is unreachable: {reason}",
                              hint="is the server up and the metrics URL (callfleet_metrics_url) right?") from None
        try:
            return json.loads(body)
        except ValueError:
            raise RemoteError(f"Prometheus at {self.base_url}: the answer to {expr!r} is not JSON") from None

    def _missing_binary(self) -> None:
        # In the lab the server is ours: a refused connection because it is not even
        # installed is a missing tool, not a remote failure.
        if self.estate.lab and shutil.which("prometheus") is None:
            raise ToolMissing("prometheus is not installed", hint="apt-get install prometheus (or `make deps`)")

    def check(self) -> None:
        """RemoteError unless the server answers and holds edge series for every site."""
        expr = promql.sites_present_query()
        present = {labels.get("site", "") for labels, _ in self.query(expr)}
        missing = [s.name for s in self.estate.sites if s.name not in present]
        if missing:
            raise RemoteError(
                f"Prometheus at {self.base_url} has no data for site(s) {', '.join(missing)} of estate "
                f"{self.estate.name} (query {expr!r})",
                hint="is the edge router's /metrics endpoint scraped by this server?")

    def site_window(self, *, site: str, window_s: float, end: float | None = None) -> LiveWindow:
        """The site's live figures over `window_s` seconds ending at `end` (default now)."""
        try:
            self.estate.site(site)
        except KeyError as exc:
            raise InvalidInput(str(exc.args[0])) from None
        at = time.time() if end is None else end
        queries = promql.site_queries(site=site, window_s=window_s)
        attempts = self._count(queries["attempts"], at=at, site=site)
        answered = self._count(queries["answered"], at=at, site=site)
        failed = self._count(queries["failed"], at=at, site=site)
        codes_expr = promql.codes_query(site=site, window_s=window_s)
        codes = {labels.get("code", "?"): round(v, 3) for labels, v in self.query(codes_expr, at=at)
                 if math.isfinite(v) and v > 0}
        return LiveWindow(
            site=site, window_s=window_s, attempts=attempts, answered=answered, failed=failed,
            failure_ratio=(min(1.0, failed / attempts) if attempts > 0 else None),
            srd_p50_ms=self._ms(queries["srd_p50_s"], at=at), srd_p95_ms=self._ms(queries["srd_p95_s"], at=at),
            queries={**queries, "codes": codes_expr}, codes=codes, end=at)

    def _one(self, expr: str, *, at: float) -> float | None:
        samples = self.query(expr, at=at)
        if len(samples) > 1:
            raise RemoteError(f"Prometheus at {self.base_url}: {expr!r} gave {len(samples)} series, expected one")
        return samples[0][1] if samples else None

    def _count(self, expr: str, *, at: float, site: str) -> float:
        # An empty answer means the series do not exist: no data, never a zero.
        value = self._one(expr, at=at)
        if value is None:
            raise RemoteError(f"Prometheus at {self.base_url} has no data for site {site} "
                              f"(query {expr!r} is empty)",
                              hint="is the edge router's /metrics endpoint scraped by this server?")
        if not math.isfinite(value):
            raise RemoteError(f"Prometheus at {self.base_url}: {expr!r} gave {value}")
        # increase() extrapolates to the window's edges: round away the float noise.
        return round(max(value, 0.0), 3)

    def _ms(self, expr: str, *, at: float) -> float | None:
        # histogram_quantile gives NaN (or nothing) when the window holds no observation.
        value = self._one(expr, at=at)
        if value is None or not math.isfinite(value):
            return None
        return round(value * 1000.0, 3)


def provider_for(estate: Estate, *, timeout: float = 5.0) -> PrometheusProvider:
    """The provider of an estate's live metrics (its `metrics_url`); InvalidInput when unset."""
    if estate.metrics_url is None:
        raise InvalidInput(f"estate {estate.name} has no metrics URL (all.vars.callfleet_metrics_url)",
                           hint="set callfleet_metrics_url to the Prometheus server scraping the edge")
    return PrometheusProvider(base_url=estate.metrics_url, estate=estate, timeout=timeout)


def parse_vector(doc: Any, *, server: str, expr: str) -> list[Sample]:
    """The samples of an instant-query answer; RemoteError for anything but a vector."""
    if not isinstance(doc, dict) or doc.get("status") != "success":
        detail = doc.get("error", doc) if isinstance(doc, dict) else doc
        raise RemoteError(f"Prometheus at {server}: query {expr!r} failed: {detail}")
    data = doc.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise RemoteError(f"Prometheus at {server}: query {expr!r} did not give an instant vector")
    samples: list[Sample] = []
    for item in data["result"]:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            value = float(item["value"][1])  # "NaN", "+Inf" parse too
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise RemoteError(f"Prometheus at {server}: malformed sample in the answer to {expr!r}") from None
        samples.append((labels, value))
    return samples


def _error_detail(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:200] or "(no body)"
    return str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc)
