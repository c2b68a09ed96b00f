"""The supervisor's eyes (impure adapters): SIPp probes of every host and number, the live
window of every site from the metrics provider, and each site's running release.

Every failure to see becomes a `Blind` entry for the core, never an absent figure that
could pass for health. A host that does not answer SIP at all is not a blind spot but a
failure: its share of the probe calls is recorded as failed with cause `unreachable`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.errors import CallfleetError, RemoteError
from orchestrator.estate.model import Estate, Host, Site
from orchestrator.metrics.provider import MetricsProvider
from orchestrator.policy.watch import WatchPolicy
from orchestrator.probe.runner import Unreachable, check_reachable, probe_site
from orchestrator.watch.model import Blind, LiveSample, ProbeSample
from orchestrator.watch.stats import LiveCount


def split_calls(total: int, parts: int) -> list[int]:
    """`total` calls over `parts` hosts, as evenly as possible (the first get one more)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class SippProber:
    """Probe every site, host and number with a bounded budget per round.

    Per site: `calls_per_number` calls per number split over its hosts, at `probe_rate`
    calls/s for the whole site (all numbers and hosts together); `parallel_sites` sites at a
    time. Each round works in a fresh directory, removed afterwards."""

    def __init__(self, *, estate: Estate, policy: WatchPolicy, workdir: Path | None = None) -> None:
        self._estate = estate
        self._policy = policy
        self._base = workdir

    def probe(self, *, at: float) -> tuple[list[ProbeSample], list[Blind]]:
        """One round of probes; samples stamped `at`."""
        root = Path(tempfile.mkdtemp(prefix="callfleet-watch-", dir=self._base))
        try:
            with ThreadPoolExecutor(max_workers=min(self._policy.parallel_sites, len(self._estate.sites))) as pool:
                results = list(pool.map(lambda s: self._probe_site(s, at=at, root=root), self._estate.sites))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        samples = [x for r in results for x in r[0]]
        blind = [b for r in results for b in r[1]]
        return samples, blind

    def _probe_site(self, site: Site, *, at: float, root: Path) -> tuple[list[ProbeSample], list[Blind]]:
        numbers = [n.number for n in self._estate.numbers]
        shares = split_calls(self._policy.calls_per_number, len(site.hosts))
        rate = self._policy.probe_rate / (len(numbers) * len(site.hosts))
        jobs = [(h, share) for h, share in zip(site.hosts, shares, strict=True) if share > 0]

        def one(job: tuple[Host, int]) -> tuple[list[ProbeSample], list[Blind]]:
            host, share = job
            unreachable = [ProbeSample(site=site.name, host=host.name, number=n, at=at, attempted=share, answered=0,
                                       failed=share, causes={"unreachable": share}) for n in numbers]
            try:
                check_reachable(self._estate, [host])
            except RemoteError:
                return unreachable, []
            try:
                report = probe_site(estate=self._estate, site=site, host=host.name, calls=share, rate=rate,
                                    workdir=root / host.name)
            except Unreachable:
                return unreachable, []  # it stopped answering between the two pings: failing, not blind
            except CallfleetError as exc:
                return [], [Blind(source="probes", site=site.name, message=f"{host.name}: {exc.message}")]
            out = []
            for n in numbers:
                st = report.stats.get(n)
                if st is None:
                    continue
                redirected = sum(c for code, c in st.failures.items() if code.startswith("3"))
                out.append(ProbeSample(site=site.name, host=host.name, number=n, at=at, attempted=st.attempted,
                                       answered=st.answered, failed=st.failed, redirected=redirected,
                                       srd_ms=st.srd_ms, causes=dict(st.failures)))
            return out, []

        with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
            results = list(pool.map(one, jobs))
        return [x for r in results for x in r[0]], [b for r in results for b in r[1]]


class LiveReader:
    """Every site's live window, all ending at the same instant (comparable figures)."""

    def __init__(self, *, provider: MetricsProvider, sites: Sequence[str], window_s: float) -> None:
        self._provider = provider
        self._sites = tuple(sites)
        self._window_s = window_s

    def read(self, *, at: float) -> tuple[list[LiveSample], list[Blind]]:
        """The live windows ending at `at`; a site the provider cannot answer for is blind."""
        samples: list[LiveSample] = []
        blind: list[Blind] = []
        for i, site in enumerate(self._sites):
            try:
                w = self._provider.site_window(site=site, window_s=self._window_s, end=at)
            except CallfleetError as exc:
                blind.append(Blind(source="metrics", site=site, message=exc.message))
                if "unreachable" in exc.message or "timed out" in exc.message:
                    # The server itself is gone: the other sites would only wait out the same timeout.
                    blind += [Blind(source="metrics", site=s, message=exc.message) for s in self._sites[i + 1:]]
                    break
                continue
            samples.append(LiveSample(site=site, at=at, attempts=w.attempts, answered=w.answered, failed=w.failed,
                                      srd_p95_ms=w.srd_p95_ms))
        return samples, blind


class LiveCounter:
    """A site's live calls over an exact span (the statistics' counts: spans that follow each
    other add up to the calls of the whole time, where the sliding windows overlap)."""

    def __init__(self, *, provider: MetricsProvider) -> None:
        self._provider = provider

    def count(self, *, site: str, start: float, end: float) -> LiveCount:
        """The edge's counts for `site` over [start, end)."""
        w = self._provider.site_window(site=site, window_s=end - start, end=end)
        return LiveCount(site=site, start=start, end=end, attempts=w.attempts, answered=w.answered,
                         failed=w.failed, codes=dict(w.codes))


def site_releases(estate: Estate) -> dict[str, str | None]:
    """Each site's release: the one its hosts share, None when they differ."""
    return {s.name: next(iter(s.releases)) if len(s.releases) == 1 else None for s in estate.sites}


class ReleaseReader:
    """Each site's running release, read over SSH at most every `refresh_s` seconds.

    A failed read keeps the last known releases (the inventory's at first) and says why."""

    def __init__(self, *, estate: Estate, refresh_s: float, observe: Callable[[Estate], Estate] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._estate = estate
        self._refresh_s = refresh_s
        self._observe = observe
        self._clock = clock
        self._known = site_releases(estate)
        self._last: float | None = None

    def releases(self) -> tuple[dict[str, str | None], str | None]:
        """The releases, and a note when a refresh failed (for the journal)."""
        if self._refresh_s <= 0 or self._observe is None:
            return dict(self._known), None
        now = self._clock()
        if self._last is not None and now - self._last < self._refresh_s:
            return dict(self._known), None
        self._last = now
        try:
            self._known = site_releases(self._observe(self._estate))
        except CallfleetError as exc:
            return dict(self._known), f"releases not refreshed: {exc.message}"
        return dict(self._known), None
