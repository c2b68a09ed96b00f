"""The rollout's prober port: is every host answering SIP, and how does a site answer calls now?

`EstateProber` is the production one (OPTIONS pings, SIPp probes through `probe.runner`);
unit tests of the executor pass their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from orchestrator.estate.model import Estate, Host
from orchestrator.probe.runner import ProbeReport, check_reachable, probe_site


class Prober(Protocol):
    """Reachability before a run, and the health probe after a wave's bake."""

    def reachable(self, hosts: Sequence[Host]) -> None:
        """RemoteError naming every host that does not answer."""
        ...

    def probe(self, site: str, *, calls: int) -> ProbeReport:
        """`calls` synthetic calls per number through the site's hosts."""
        ...


class EstateProber:
    """OPTIONS pings and SIPp probes against the estate."""

    def __init__(self, estate: Estate) -> None:
        self.estate = estate

    def reachable(self, hosts: Sequence[Host]) -> None:
        """See `probe.runner.check_reachable`."""
        check_reachable(self.estate, hosts)

    def probe(self, site: str, *, calls: int) -> ProbeReport:
        """See `probe.runner.probe_site` (50 calls/s)."""
        return probe_site(estate=self.estate, site=self.estate.site(site), calls=calls, rate=50)
