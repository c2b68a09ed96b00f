"""`site upgrade` and `site rollback`: one site, by hand or from the rollout engine.

Order: verify bundle -> preflight + install + `kamailio -c` (nothing live changes) ->
drain (bounded wait for calls in flight) -> switch + restart + verify -> testinfra
post-checks -> undrain. Any failure after the switch rolls the site back and gives
its traffic back; if the rollback fails too, the site stays drained for a human.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import CallfleetError, RemoteError, RollbackFailed, RolledBack
from orchestrator.release.bundle import bundle_digest, require_verified
from orchestrator.site.ops import SiteOps, failures_text, require_ok

Outcome = Literal["upgraded", "unchanged", "would-change", "rolled-back"]


class Step(BaseModel):
    """One step of a site change, as reported."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    ok: bool
    seconds: float
    detail: str = ""


class SiteReport(BaseModel):
    """What a site upgrade or rollback did."""

    model_config = ConfigDict(extra="forbid")
    site: str
    target: str | None
    outcome: Outcome | None = None
    changed_hosts: dict[str, int] = {}
    steps: list[Step] = []
    error: str | None = None


class _Steps:
    def __init__(self, report: SiteReport, on_step: Callable[[Step], None] | None) -> None:
        self.report = report
        self.on_step = on_step

    def record(self, name: str, started: float, ok: bool, detail: str = "") -> None:
        step = Step(name=name, ok=ok, seconds=round(time.monotonic() - started, 3), detail=detail)
        self.report.steps.append(step)
        if self.on_step:
            self.on_step(step)


def upgrade_site(ops: SiteOps, *, site: str, version: str, bundle: Path, check: bool = False,
                 keep_drained: bool = False, on_step: Callable[[Step], None] | None = None) -> SiteReport:
    """Upgrade every host of `site` to `version`; see the module docstring for the order.

    `keep_drained` leaves the site out of live traffic after a good upgrade, for the gate
    to judge it before any live call reaches it."""
    report = SiteReport(site=site, target=version)
    steps = _Steps(report, on_step)
    ops.estate.site(site)  # KeyError for an unknown site, before anything runs

    t = time.monotonic()
    manifest = require_verified(bundle)  # InvalidInput: nothing touched
    if manifest.version != version:
        from orchestrator.errors import InvalidInput

        raise InvalidInput(f"{bundle}: bundle is release {manifest.version}, not {version}")
    steps.record("verify bundle", t, True, f"{len(manifest.files)} files")

    t = time.monotonic()
    pre = ops.preflight(site, version, bundle, check=check)
    steps.record("preflight", t, pre.succeeded, failures_text(pre) if not pre.succeeded else "")
    require_ok(pre, f"preflight of {site} (nothing was switched)")

    if check:
        t = time.monotonic()
        dry = ops.switch(site, version, check=True)
        steps.record("switch (check mode)", t, dry.succeeded)
        require_ok(dry, f"check-mode switch of {site}")
        report.changed_hosts = {h: pre.hosts[h].changed + r.changed for h, r in dry.hosts.items()}
        report.outcome = "would-change" if any(report.changed_hosts.values()) else "unchanged"
        return report

    t = time.monotonic()
    waited = ops.drain(site)  # DrainTimeout: the site was not touched
    steps.record("drain", t, True, f"in-flight calls ended after {waited:.2f}s")

    try:
        t = time.monotonic()
        result = ops.switch(site, version, digest=bundle_digest(bundle))
        steps.record("switch", t, result.succeeded, failures_text(result) if not result.succeeded else "")
        require_ok(result, f"switch of {site} to {version}")
        t = time.monotonic()
        checks = ops.postcheck(site, version)
        bad = [f"{c.host}: {c.check}: {c.detail}" for c in checks if not c.ok]
        steps.record("post-check", t, not bad, "; ".join(bad))
        if bad:
            raise RemoteError(f"post-checks of {site} failed: {'; '.join(bad)}")
    except CallfleetError as exc:
        report.error = exc.message
        _rollback_after_failure(ops, site, steps, cause=exc.message)
        report.outcome = "rolled-back"
        raise RolledBack(f"{site}: upgrade to {version} failed ({exc.message}); rolled back to the "
                         "previous release and traffic restored") from None

    if not keep_drained:
        t = time.monotonic()
        ops.undrain(site)
        steps.record("undrain", t, True)
    report.changed_hosts = {h: pre.hosts.get(h, r).changed + r.changed for h, r in result.hosts.items()}
    report.outcome = "upgraded" if any(r.changed for r in result.hosts.values()) else "unchanged"
    return report


def _rollback_after_failure(ops: SiteOps, site: str, steps: _Steps, *, cause: str) -> None:
    t = time.monotonic()
    rb = ops.rollback(site)
    steps.record("rollback", t, rb.succeeded, failures_text(rb) if not rb.succeeded else "")
    if not rb.succeeded:
        raise RollbackFailed(f"{site}: rollback after a failed upgrade ({cause}) failed too: "
                             f"{failures_text(rb)}; the site stays drained")
    t = time.monotonic()
    ops.undrain(site)
    steps.record("undrain", t, True, "traffic restored")


def rollback_site(ops: SiteOps, *, site: str, on_step: Callable[[Step], None] | None = None) -> SiteReport:
    """Break-glass: drain, put back each host's previous release, verify, undrain."""
    report = SiteReport(site=site, target=None)
    steps = _Steps(report, on_step)
    ops.estate.site(site)
    t = time.monotonic()
    waited = ops.drain(site)
    steps.record("drain", t, True, f"in-flight calls ended after {waited:.2f}s")
    t = time.monotonic()
    rb = ops.rollback(site)
    steps.record("rollback", t, rb.succeeded, failures_text(rb) if not rb.succeeded else "")
    if not rb.succeeded:
        raise RollbackFailed(f"{site}: rollback failed: {failures_text(rb)}; the site stays drained")
    t = time.monotonic()
    ops.undrain(site)
    steps.record("undrain", t, True)
    report.changed_hosts = {h: r.changed for h, r in rb.hosts.items()}
    report.outcome = "rolled-back"
    return report
