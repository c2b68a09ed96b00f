"""The ports of the supervisor loop: what it observes with and acts through (fakes in unit tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.alerting import Alert
from orchestrator.traffic.steering import SiteTraffic
from orchestrator.watch.model import Blind, LiveSample, ProbeSample


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


@dataclass
class Ports:
    """Everything the loop touches. `live`, `steering` and `alerts` may be absent."""

    prober: Prober
    live: Live | None = None
    steering: Steering | None = None
    releases: Callable[[], tuple[dict[str, str | None], str | None]] = field(default=lambda: ({}, None))
    alerts: AlertSink | None = None
