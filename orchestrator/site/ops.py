"""The effects one site change is made of, each behind a small method.

The rollout engine calls these one by one (journalling around each); `site upgrade`
and `site rollback` compose them for people at a terminal.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from orchestrator.ansible import runner
from orchestrator.ansible.runner import RunResult, TaskEvent
from orchestrator.errors import RemoteError
from orchestrator.estate.model import Estate
from orchestrator.estate.ssh import ssh_trust
from orchestrator.hostcheck.checks import CheckResult, check_hosts
from orchestrator.resources import playbooks_dir
from orchestrator.traffic.steering import TrafficSteering, wait_drained


class SiteOps:
    """Ansible, steering and host checks for the sites of one estate."""

    def __init__(self, *, estate: Estate, inventory: Path, steering: TrafficSteering,
                 work_dir: Path | None = None, on_event: Callable[[TaskEvent], None] | None = None,
                 drain_timeout_s: float = 30.0) -> None:
        self.estate = estate
        self.inventory = inventory.absolute()
        self.steering = steering
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="callfleet-site-"))
        self.on_event = on_event
        self.drain_timeout_s = drain_timeout_s

    def _play(self, name: str, site: str, extra: dict[str, object], *, check: bool = False,
              background: threading.Event | None = None) -> RunResult:
        # A background run (staging the next site) has its own private dir and reports no task
        # events: it runs beside the wave in flight, whose own runs keep theirs.
        return runner.run(inventory=self.inventory, trust=ssh_trust(self.estate),
                          playbook=playbooks_dir() / f"{name}.yml",
                          extra_vars={"callfleet_target": site, **extra}, check=check,
                          on_event=None if background else self.on_event, cancel=background,
                          private_dir=self.work_dir / ("ansible-stage" if background else "ansible"),
                          expect_hosts=frozenset(h.name for h in self.estate.site(site).hosts))

    def preflight(self, site: str, version: str, bundle: Path | None, *, check: bool = False) -> RunResult:
        """Reachability, disk, current release; install `version` beside it; `kamailio -c` on each host."""
        extra: dict[str, object] = {"callserver_target_release": version}
        if bundle is not None:
            extra["callserver_bundle_dir"] = str(bundle)
        return self._play("preflight", site, extra, check=check)

    def stage(self, site: str, version: str, bundle: Path | None, cancel: threading.Event) -> RunResult:
        """The preflight run, in the background, while another site's wave is in flight
        (`cancel` stops it: a halt does not wait for it)."""
        extra: dict[str, object] = {"callserver_target_release": version}
        if bundle is not None:
            extra["callserver_bundle_dir"] = str(bundle)
        return self._play("preflight", site, extra, background=cancel)

    def unstage(self, site: str, version: str) -> RunResult:
        """Remove `version` from each host of `site` where it is neither current nor previous."""
        return self._play("unstage", site, {"callserver_target_release": version})

    def switch(self, site: str, version: str, *, digest: str | None = None, check: bool = False) -> RunResult:
        """Re-verify `version` on each host (against `digest`, the verified manifest's sha256,
        when given), point `current` at it, restart through the handler, wait ready, verify."""
        extra: dict[str, object] = {"callserver_target_release": version}
        if digest is not None:
            extra["callserver_bundle_digest"] = digest
        return self._play("upgrade", site, extra, check=check)

    def rollback(self, site: str) -> RunResult:
        """Put back the release each host recorded as previous."""
        return self._play("rollback", site, {})

    def postcheck(self, site: str, version: str) -> list[CheckResult]:
        """testinfra host checks of every host of the site, expecting `version`."""
        return check_hosts(self.estate, self.estate.site(site).hosts, version)

    def drain(self, site: str) -> float:
        """Drain the site and wait (bounded) until its calls in flight have ended."""
        self.steering.drain(site)
        return wait_drained(self.steering, site, timeout_s=self.drain_timeout_s)

    def undrain(self, site: str) -> None:
        """Give the site its traffic share back."""
        self.steering.undrain(site)


def failures_text(result: RunResult) -> str:
    """`host: reason; host: reason` for a failed run."""
    return "; ".join(f"{h}: {why}" for h, why in sorted(result.failures().items())) or result.status


def require_ok(result: RunResult, what: str) -> None:
    """RemoteError naming each failing host."""
    if not result.succeeded:
        raise RemoteError(f"{what} failed: {failures_text(result)}")
