"""The metrics-provider port: what the live-traffic gate asks of a metrics backend.

A provider answers for one site over a window: how many emergency INVITEs the edge
sent to the site's hosts, how many were answered, how many failed, and the setup
delay (SRD) percentiles. It never answers with a silent zero: an unreachable
backend, or one that holds no data for the estate, raises.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict


class LiveWindow(BaseModel):
    """Live figures of one site over a window ending at `end` (unix time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    site: str
    window_s: float
    attempts: float  # emergency INVITEs the edge sent to the site's hosts in the window
    answered: float  # answered 200
    failed: float  # final answers 4xx/5xx/6xx (the edge's own 408 timeouts included; 487 not)
    failure_ratio: float | None  # failed / attempts; None when attempts == 0
    srd_p50_ms: float | None  # INVITE to final answer seen at the edge (histogram quantile)
    srd_p95_ms: float | None
    queries: dict[str, str]  # the PromQL (or backend query) used, for the evidence
    codes: dict[str, float] = {}  # final answers by SIP code in the window (evidence)
    end: float | None = None  # when the window ended (unix time), None: the backend's now


class MetricsProvider(Protocol):
    """A backend of live metrics (Prometheus in the lab and in production)."""

    def check(self) -> None:
        """Raise RemoteError when the backend is unreachable or has no data for the estate,
        ToolMissing when the backend's binary is absent (lab)."""
        ...

    def site_window(self, *, site: str, window_s: float, end: float | None = None) -> LiveWindow:
        """The site's live figures over the `window_s` seconds ending at `end` (default now).

        Querying two sites with the same `end` compares them over the same window."""
        ...
