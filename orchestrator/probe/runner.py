"""Probe a site: synthetic calls to every emergency number through each of its hosts."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.estate.model import Estate, Host, Site
from orchestrator.probe import metrics
from orchestrator.probe.metrics import NumberResult
from orchestrator.probe.ping import options_ping
from orchestrator.sipp import scenarios
from orchestrator.sipp.scenarios import CallStats

MAX_CALLS = 100_000
# SIPp callers of one probe at a time. Not more: each SIPp binds its RTP sockets from port
# 6000 up and gives up after 100 tries, so 64 at once on one source address (a canary and its
# baseline of 8 hosts x 4 numbers) fail to start. A site of more than 16 (host, number) pairs
# therefore probes in batches (a longer window) until each caller gets its own media ports.
MAX_PARALLEL = 16


class ProbeReport(BaseModel):
    """Per-number results of one probe of one site (and per host)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    site: str
    hosts: tuple[str, ...]
    calls_per_number: int
    rate: float
    numbers: tuple[NumberResult, ...]
    per_host: tuple[NumberResult, ...]
    # raw per-number samples (setup delays) for the gate's statistics; not in JSON output
    stats: dict[str, CallStats] = Field(default_factory=dict, exclude=True)

    @property
    def all_answered(self) -> bool:
        """Every attempted call answered, and at least one attempted per number."""
        return all(n.attempted > 0 and n.ser == 1.0 for n in self.numbers)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Unreachable(RemoteError):
    """A host did not answer an OPTIONS ping: its calls would fail (not a probe that broke)."""


def check_reachable(estate: Estate, hosts: Sequence[Host]) -> None:
    """Unreachable (a RemoteError) naming every host that does not answer an OPTIONS ping."""
    source = str(estate.probe_source) if estate.probe_source else None
    if not hosts:
        return
    # all hosts at once: a dead host costs one ping timeout, not one per host before it
    with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
        answers = list(pool.map(lambda h: options_ping(address=str(h.address), port=h.sip_port, source=source),
                                hosts))
    dead = [h.name for h, answer in zip(hosts, answers, strict=True) if answer is None]
    if dead:
        raise Unreachable(f"no SIP answer from {', '.join(dead)}: the site is unreachable")


def probe_site(*, estate: Estate, site: Site, host: str | None = None,
               numbers: Sequence[str] | None = None, calls: int = 100, rate: float = 50.0,
               workdir: Path | None = None) -> ProbeReport:
    """Place `calls` calls per number through the site (split over its hosts) and report."""
    if not 1 <= calls <= MAX_CALLS:
        raise InvalidInput(f"--calls: {calls} is out of range 1..{MAX_CALLS}")
    if not 0 < rate <= 1000:
        raise InvalidInput(f"--rate: {rate:g} is out of range (0, 1000]")
    hosts = [h for h in site.hosts if host is None or h.name == host]
    if not hosts:
        raise InvalidInput(f"--host: {host} is not in site {site.name} "
                           f"(hosts: {', '.join(h.name for h in site.hosts)})")
    try:
        wanted = [estate.number(n) for n in (numbers or [n.number for n in estate.numbers])]
    except KeyError as exc:
        raise InvalidInput(f"--number: {exc.args[0]}") from None
    scenarios.sipp_binary()  # a missing SIPp is an error before any host is touched
    check_reachable(estate, hosts)
    source = str(estate.probe_source) if estate.probe_source else "127.0.0.1"
    base = workdir or Path(tempfile.mkdtemp(prefix="callfleet-probe-"))
    jobs = []
    for h, share in zip(hosts, _split(calls, len(hosts)), strict=True):
        if share == 0:
            continue
        for n in wanted:
            jobs.append((h, n.number, n.probe_route, share))
    per_host_rate = rate / len(hosts)

    def run(job: tuple[Host, str, str, int]) -> tuple[Host, str, CallStats]:
        h, number, route, share = job
        stats = scenarios.run_caller(local_address=source, target=f"{h.address}:{h.sip_port}",
                                     number=route, calls=share, rate=per_host_rate,
                                     workdir=base / h.name / number)
        return h, number, stats

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(jobs))) as pool:
        results = list(pool.map(run, jobs))
    per_host = tuple(metrics.number_result(site=site.name, host=h.name, number=num, stats=s)
                     for h, num, s in results)
    stats = {n.number: metrics.merge(s for _, num, s in results if num == n.number) for n in wanted}
    merged = tuple(metrics.number_result(site=site.name, host=None, number=num, stats=st)
                   for num, st in stats.items())
    return ProbeReport(site=site.name, hosts=tuple(h.name for h in hosts), calls_per_number=calls,
                       rate=rate, numbers=merged, per_host=per_host, stats=stats)
