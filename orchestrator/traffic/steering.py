"""Steer emergency traffic between sites: drain, undrain, weight steps, in-flight calls.

One small interface (TrafficSteering) with one adapter today, the Kamailio dispatcher
on the edge router; a production SBC or DNS-SRV adapter implements the same methods.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.estate.model import Estate
from orchestrator.traffic.edge import EdgeShell, SshEdge

DISPATCHER_SET = "1"


class SiteTraffic(BaseModel):
    """A site's steering state: its relative weight and whether it is drained."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    site: str
    weight: int
    drained: bool
    share: float  # fraction of all emergency traffic the site receives now


class DrainTimeout(RemoteError):
    """Calls were still in flight on a drained site when the bounded wait ran out."""


class TrafficSteering(Protocol):
    """What the upgrade and rollout engines need from an edge."""

    def state(self) -> dict[str, SiteTraffic]:
        """Every site's weight, drained flag and share."""
        ...

    def drain(self, site: str) -> None:
        """Send the site no new calls (its share moves to the other sites)."""
        ...

    def undrain(self, site: str) -> None:
        """Give the site its weight's share again."""
        ...

    def set_weight(self, site: str, weight: int) -> None:
        """Set the site's relative weight (1-100)."""
        ...

    def in_flight(self, site: str) -> int:
        """Calls in progress on the site's hosts."""
        ...


_LINE = re.compile(r"^(?P<set>\d+)\s+(?P<uri>\S+)\s+(?P<flags>\d+)\s+(?P<prio>\d+)\s+(?P<attrs>\S+)\s*$")


class KamailioDispatcher:
    """Steering through the edge's Kamailio dispatcher (algorithm 11, `rweight`).

    The list file on the edge host is the durable record (it survives an edge restart);
    drains take effect at once with `dispatcher.set_state`, weight changes with a
    reload there. The edge is reached through an EdgeShell (SSH in production and in
    the lab alike), never through a local socket or file.
    """

    def __init__(self, estate: Estate, edge: EdgeShell) -> None:
        if estate.edge is None:
            raise InvalidInput("the inventory names no edge_router: traffic steering needs one")
        self._estate = estate
        self._edge = edge
        self._list = estate.edge.dispatcher_list

    # -- the list file ---------------------------------------------------------------
    def _read(self) -> dict[str, tuple[int, bool]]:
        """site -> (weight, drained), from the list file."""
        sites: dict[str, tuple[int, bool]] = {}
        host_site = {h.sip_uri: h.site for h in self._estate.hosts}
        text = self._edge.read_file(self._list)
        for line in text.splitlines():
            m = _LINE.match(line.strip())
            if not m or m["uri"] not in host_site:
                continue
            attrs = dict(kv.split("=", 1) for kv in m["attrs"].split(";") if "=" in kv)
            sites[host_site[m["uri"]]] = (int(attrs.get("rweight", "1")), int(m["flags"]) & 1 == 1)
        return sites

    def _write(self, sites: dict[str, tuple[int, bool]]) -> None:
        lines = ["# setid destination flags priority attrs (managed by callfleet steering)"]
        for site in self._estate.sites:
            weight, drained = sites.get(site.name, (max(site.weight, 1), False))
            for host in site.hosts:
                lines.append(f"{DISPATCHER_SET} {host.sip_uri} {1 if drained else 0} 0 "
                             f"duid={host.name};rweight={weight};site={site.name}")
        self._edge.write_file(self._list, "\n".join(lines) + "\n")  # atomic on the edge host

    # -- TrafficSteering -------------------------------------------------------------
    def state(self) -> dict[str, SiteTraffic]:
        """Every site's weight, drained flag and share of traffic."""
        sites = self._read()
        active_total = sum(w * len(self._estate.site(s).hosts) for s, (w, d) in sites.items() if not d)
        return {s: SiteTraffic(site=s, weight=w, drained=d,
                               share=0.0 if d or not active_total
                               else w * len(self._estate.site(s).hosts) / active_total)
                for s, (w, d) in sites.items()}

    def _site(self, site: str) -> None:
        try:
            self._estate.site(site)
        except KeyError as exc:
            raise InvalidInput(str(exc.args[0])) from None

    def _set_state(self, site: str, state: str) -> None:
        for host in self._estate.site(site).hosts:
            self._edge.rpc("dispatcher.set_state", state, DISPATCHER_SET, host.sip_uri)

    def drain(self, site: str) -> None:
        """Mark the site's destinations inactive: algorithm 11 skips them at once."""
        self._site(site)
        sites = self._read()
        weight, _ = sites.get(site, (100, False))
        sites[site] = (weight, True)
        self._write(sites)
        self._set_state(site, "ip")

    def undrain(self, site: str) -> None:
        """Mark the site's destinations active again."""
        self._site(site)
        sites = self._read()
        weight, _ = sites.get(site, (100, False))
        sites[site] = (weight, False)
        self._write(sites)
        self._set_state(site, "ap")

    def set_weight(self, site: str, weight: int) -> None:
        """Rewrite the site's rweight and reload the dispatcher (rate-limited: retried)."""
        self._site(site)
        if not 1 <= weight <= 100:
            raise InvalidInput(f"weight {weight} is out of range 1..100 (use drain for 0)")
        sites = self._read()
        _, drained = sites.get(site, (weight, False))
        sites[site] = (weight, drained)
        self._write(sites)
        self._reload()

    def _reload(self) -> None:
        for attempt in range(4):
            try:
                self._edge.rpc("dispatcher.reload")
                return
            except RemoteError as exc:
                # reload_delta refuses a reload within a second of the last one
                # ("error: 500 - Ongoing reload"): wait it out, a bounded number of times.
                if attempt == 3 or "ongoing reload" not in exc.message.lower():
                    raise
                time.sleep(1.0)

    def in_flight(self, site: str) -> int:
        """Calls the edge has in progress towards the site's hosts (dialog profile)."""
        self._site(site)
        total = 0
        for host in self._estate.site(site).hosts:
            out = self._edge.rpc("dlg.profile_get_size", "dest", host.sip_uri)
            total += int(out.strip().splitlines()[-1]) if out.strip() else 0
        return total

    def live_flags(self) -> dict[str, str]:
        """host URI -> dispatcher flags as the edge holds them now (A active, I inactive)."""
        out = self._edge.rpc("dispatcher.list")
        return dict(re.findall(r"URI: (\S+)\s+FLAGS: (\S+)", out))


def dispatcher_for(estate: Estate) -> KamailioDispatcher:
    """The estate's steering: its edge's dispatcher, reached over SSH."""
    return KamailioDispatcher(estate, SshEdge(estate))


def wait_drained(steering: TrafficSteering, site: str, *, timeout_s: float,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> float:
    """Wait until the site has no call in flight; returns the seconds waited.

    Emergency calls are never cut: past the bounded wait this raises DrainTimeout
    and the caller must not touch the site."""
    start = clock()
    while True:
        left = steering.in_flight(site)
        if left == 0:
            return clock() - start
        if clock() - start >= timeout_s:
            raise DrainTimeout(f"{site}: {left} call(s) still in flight after {timeout_s:g}s of drain; "
                               "not touching the site")
        sleep(0.1)
