"""The ports of the supervisor loop: what it observes with and acts through (fakes in unit tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from orchestrator.alerting import Alert
from orchestrator.alerting.psap import NoticeKind, PsapClock
from orchestrator.traffic.failed_calls import Collected
from orchestrator.traffic.steering import SiteTraffic
from orchestrator.watch.model import Blind, LiveSample, ProbeSample
from orchestrator.watch.stats import LiveCount


class Prober(Protocol):
    """Synthetic calls (SippProber)."""

    def probe(self, *, at: float) -> tuple[list[ProbeSample], list[Blind]]:
        """One round of probes."""
        ...


class Live(Protocol):
    """Live metrics (LiveReader)."""

    def read(self, *, at: float) -> tuple[list[LiveSample], list[Blind]]:
        """Every site's live window ending at `at`."""
        ...


class LiveCounts(Protocol):
    """Live call counts over an exact span, for the statistics (LiveCounter)."""

    def count(self, *, site: str, start: float, end: float) -> LiveCount:
        """The site's live calls over [start, end); CallfleetError when the backend cannot say."""
        ...


class Steering(Protocol):
    """The part of TrafficSteering the watch uses."""

    def state(self) -> dict[str, SiteTraffic]:
        """Every site's weight, drained flag and share."""
        ...

    def drain(self, site: str) -> None:
        """Send the site no new calls."""
        ...

    def undrain(self, site: str) -> None:
        """Give the site its share again."""
        ...


class FailedCalls(Protocol):
    """The public's failed calls as the edge kept them (EdgeFailedCalls)."""

    def collect(self) -> Collected:
        """Every failed call the edge holds, and what could not be read."""
        ...

    def forget(self, call_ids: list[str]) -> None:
        """Delete calls the store now has."""
        ...


class Handle(Protocol):
    """What the notifier returns for one alert."""

    def wait(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for every delivery."""
        ...


class AlertSink(Protocol):
    """The alerting notifier (Notifier)."""

    def submit(self, alert: Alert) -> Handle:
        """Start delivering; returns at once."""
        ...


class PsapLedger(Protocol):
    """Where the PSAP clocks are kept and notices claimed once (AlertStore)."""

    def psap_clock(self, incident_id: str) -> PsapClock | None:
        """The incident's clock as recorded."""
        ...

    def save_psap_clock(self, clock: PsapClock) -> PsapClock:
        """Record it (sent times already recorded are kept); returns the merged clock."""
        ...

    def claim_psap(self, clock: PsapClock, kind: NoticeKind, *, at: datetime) -> tuple[bool, PsapClock]:
        """Claim a notice: (whether this caller sends it, the clock)."""
        ...


@dataclass
class Ports:
    """Everything the loop touches. All but `prober` may be absent."""

    prober: Prober
    live: Live | None = None
    counter: LiveCounts | None = None
    steering: Steering | None = None
    releases: Callable[[], tuple[dict[str, str | None], str | None]] = field(default=lambda: ({}, None))
    alerts: AlertSink | None = None
    psap: PsapLedger | None = None  # None: no `psaps` audience, or no alert config
    failed_calls: FailedCalls | None = None  # None: no edge in the inventory
