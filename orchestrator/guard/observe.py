"""The guard's eyes: one round of tallies per site, from the edge's live counters and short probes.

The only impure part of the guard besides the loop: the metrics backend (the same
`MetricsProvider` the live steps read) and SIPp probes (`probe_site`, the gate's probe).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from orchestrator.errors import CallfleetError
from orchestrator.estate.model import Estate
from orchestrator.guard.judge import LIVE, Tally
from orchestrator.metrics.provider import MetricsProvider
from orchestrator.probe.runner import probe_site

# Sites probed at once: a round must not load the estate (or the machine running it) much.
PARALLEL_SITES = 2


class GuardObserver(Protocol):
    """One round's tallies for the given sites."""

    def round(self, *, sites: Sequence[str], number: int, since: float, until: float,
              probe: bool) -> list[Tally]:
        """Tallies of round `number`: live calls ended in (since, until], and a probe if asked."""
        ...


class EstateObserver:
    """Live counters per site from the metrics backend, and SIPp probes per site and number."""

    def __init__(self, *, estate: Estate, metrics: MetricsProvider, probe_calls_per_number: int) -> None:
        self.estate = estate
        self.metrics = metrics
        self.probe_calls = probe_calls_per_number

    def round(self, *, sites: Sequence[str], number: int, since: float, until: float,
              probe: bool) -> list[Tally]:
        """Tallies of round `number` for `sites`."""
        out: list[Tally] = []
        for site in sites:
            window = self.metrics.site_window(site=site, window_s=max(until - since, 1.0), end=until)
            calls = max(0, round(window.attempts))
            out.append(Tally(site=site, scope=LIVE, round=number, calls=calls,
                             failed=min(calls, max(0, round(window.failed)))))
        if probe and self.probe_calls > 0:
            with ThreadPoolExecutor(max_workers=PARALLEL_SITES) as pool:
                for tallies in pool.map(lambda s: self._probe(s, number), sites):
                    out.extend(tallies)
        return out

    def _probe(self, site: str, number: int) -> list[Tally]:
        numbers = [n.number for n in self.estate.numbers]
        try:
            report = probe_site(estate=self.estate, site=self.estate.site(site), calls=self.probe_calls, rate=20)
        except CallfleetError:
            # a site whose hosts do not answer at all fails every call it was asked to place
            return [Tally(site=site, scope=n, round=number, calls=self.probe_calls, failed=self.probe_calls)
                    for n in numbers]
        return [Tally(site=site, scope=r.number, round=number, calls=r.answered + r.failed, failed=r.failed)
                for r in report.numbers]
