"""Observed facts: the release each host really has as `current` (over SSH, Fabric).

Plans are built from what the hosts say, not from what the inventory declares, so the
plan printed is the plan executed and a rollback goes back to what really ran."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from orchestrator.errors import RemoteError
from orchestrator.estate.model import Estate, Host
from orchestrator.fabricops.run import run_on_hosts


def observe(estate: Estate) -> Estate:
    """The estate with every host's release replaced by its `current` link on the host."""
    def current(host: Host) -> str:
        result = run_on_hosts(estate=estate, hosts=[host], command=f"readlink {host.root}/current",
                              timeout=20).results[0]
        if not result.ok or not result.stdout.strip():
            raise RemoteError(f"{host.name}: cannot read its current release: "
                              f"{result.error or result.stderr.strip() or 'no current link'}")
        return result.stdout.strip().rstrip("/").rsplit("/", 1)[-1]

    with ThreadPoolExecutor(max_workers=min(16, len(estate.hosts))) as pool:
        releases = dict(zip([h.name for h in estate.hosts], pool.map(current, estate.hosts), strict=True))
    sites = tuple(s.model_copy(update={"hosts": tuple(h.model_copy(update={"release": releases[h.name]})
                                                      for h in s.hosts)}) for s in estate.sites)
    return estate.model_copy(update={"sites": sites})
