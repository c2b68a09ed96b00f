"""PromQL for the live metrics the edge router exports (pure: strings in, strings out).

Metric names are those of orchestrator/lab/files/edge.cfg (xhttp_prom, prefix
`kamailio_`); docs/METRICS.md lists them. Counters go through `increase()` over the
window, so counter resets (an edge restart) are handled by Prometheus.
"""

from __future__ import annotations

import math
import re

from orchestrator.errors import InvalidInput

INVITES = "kamailio_edge_invites_total"
ANSWERED = "kamailio_edge_answered_total"
FAILED = "kamailio_edge_failed_total"
REPLIES = "kamailio_edge_replies_total"
SRD_BUCKETS = "kamailio_edge_srd_seconds_bucket"

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def duration(window_s: float) -> str:
    """A PromQL range duration for `window_s` seconds, in whole milliseconds."""
    if not math.isfinite(window_s) or window_s < 1.0:
        raise InvalidInput(f"metrics window: {window_s!r} s is too short (at least 1 s)")
    return f"{round(window_s * 1000)}ms"


def selector(metric: str, *, site: str) -> str:
    """`metric{site="..."}`; the site name is checked, never escaped into the query."""
    if not _LABEL_VALUE.match(site):
        raise InvalidInput(f"metrics: site name {site!r} is not a valid label value")
    return f'{metric}{{site="{site}"}}'


def site_queries(*, site: str, window_s: float) -> dict[str, str]:
    """The instant queries giving a site's LiveWindow, by figure name."""
    w = duration(window_s)

    def total(metric: str) -> str:
        return f"sum(increase({selector(metric, site=site)}[{w}]))"

    def quantile(q: float) -> str:
        return f"histogram_quantile({q}, sum by (le) (increase({selector(SRD_BUCKETS, site=site)}[{w}])))"

    return {
        "attempts": total(INVITES),
        "answered": total(ANSWERED),
        "failed": total(FAILED),
        "srd_p50_s": quantile(0.5),
        "srd_p95_s": quantile(0.95),
    }


def sites_present_query() -> str:
    """The sites the backend holds edge series for (one sample per site)."""
    return f"count by (site) ({INVITES})"


def codes_query(*, site: str, window_s: float) -> str:
    """Final answers of a site by SIP code over the window (evidence of what failed)."""
    return f"sum by (code) (increase({selector(REPLIES, site=site)}[{duration(window_s)}]))"
