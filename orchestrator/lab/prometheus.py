"""The lab's Prometheus server: scrapes the edge's and every call server's xhttp_prom.

Listens on the services machine's address, port 9090 (started inside its network
namespace, so only the lab's bridge reaches it); configuration generated from the estate;
storage under the state directory, kept one day. Scrape and evaluation every second,
so a live-traffic step of a few seconds already has data.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from orchestrator import procs
from orchestrator.errors import RemoteError
from orchestrator.estate.model import Estate
from orchestrator.lab.state import Component
from orchestrator.lab.topology import METRICS_PORT, PROMETHEUS_PORT, LabParams, prometheus_url, services_address

READY_TIMEOUT_S = 15.0
EDGE_JOB = "callfleet-edge"
CALLSERVER_JOB = "callfleet-callservers"


def paths(state_dir: Path) -> dict[str, Path]:
    """Where the lab's Prometheus keeps its config, data and log."""
    d = state_dir / "prometheus"
    return {"dir": d, "cfg": d / "prometheus.yml", "data": d / "data", "log": d / "prometheus.log"}


def scrape_config(estate: Estate) -> dict[str, Any]:
    """Prometheus configuration scraping the estate's edge and call servers (pure)."""
    # honor_timestamps off: xhttp_prom stamps every sample, and stamped samples never
    # go stale, so a dead exporter's last values would linger for five minutes.
    common = {"scrape_interval": "1s", "scrape_timeout": "1s", "honor_timestamps": False,
              "metrics_path": "/metrics"}
    jobs: list[dict[str, Any]] = []
    if estate.edge is not None:
        jobs.append({"job_name": EDGE_JOB, **common,
                     "static_configs": [{"targets": [f"{estate.edge.address}:{METRICS_PORT}"]}]})
    jobs.append({"job_name": CALLSERVER_JOB, **common, "static_configs": [
        {"targets": [f"{h.address}:{METRICS_PORT}"], "labels": {"site": h.site, "host": h.name}}
        for h in estate.hosts]})
    return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": jobs}


def ready(url: str, *, timeout: float = 1.0) -> bool:
    """True when the server at `url` answers /-/ready with 200."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=timeout) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError):
        return False


def start(estate: Estate, state_dir: Path, params: LabParams, *, wrap: Sequence[str] = ()) -> Component:
    """Write the config and start the server; RemoteError unless ready in READY_TIMEOUT_S.

    `wrap`: an argv prefix running it elsewhere (the services machine's network namespace)."""
    binary = procs.require_binary("prometheus", package="prometheus")
    p = paths(state_dir)
    p["data"].mkdir(parents=True, exist_ok=True)
    p["cfg"].write_text("# written by `callfleet lab up`\n" + yaml.safe_dump(scrape_config(estate), sort_keys=False))
    address = str(services_address(params))
    pid = procs.spawn([*wrap, binary, f"--config.file={p['cfg']}", f"--storage.tsdb.path={p['data']}",
                       "--storage.tsdb.retention.time=1d", f"--web.listen-address={address}:{PROMETHEUS_PORT}"],
                      log=p["log"], cwd=p["dir"])
    url = prometheus_url(params)
    if not procs.wait_for(lambda: ready(url) or not procs.alive(pid), timeout=READY_TIMEOUT_S, interval=0.1) \
            or not procs.alive(pid):
        procs.stop_pid(pid, expect="prometheus")
        raise RemoteError(f"prometheus did not become ready at {url}: {procs.tail(p['log'])}")
    return Component(name="prometheus", kind="prometheus", address=f"{address}:{PROMETHEUS_PORT}", pid=pid,
                     expect="prometheus", log=str(p["log"]))
