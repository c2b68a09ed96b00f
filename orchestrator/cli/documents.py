"""The `--json` documents commands print that are not a domain model of their own.

Commands build these models and print them with `emit_json`, so what they print is what the
shipped JSON Schemas (orchestrator/schemas) describe. Field names are part of the contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.alerting.models import Delivery, NotificationState
from orchestrator.alerting.psap import NoticeKind
from orchestrator.alerting.store import Incident
from orchestrator.lab.faults import Fault
from orchestrator.probe.runner import ProbeReport
from orchestrator.rollout.executor import Outcome
from orchestrator.rollout.journal import Event, Run, RunSummary
from orchestrator.traffic.failed_calls import FailedCall
from orchestrator.traffic.steering import SiteTraffic


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EstateSummary(_Document):
    """`estate validate --json` and `provision inventory --json`: an inventory that loads."""

    inventory: str
    estate: str
    sites: int
    hosts: int


class EstateValidation(EstateSummary):
    """`estate validate --json` (an invalid inventory is the error document)."""

    valid: bool


class ProvisionedInventory(EstateSummary):
    """`provision inventory --json`: the inventory written from a stack's outputs."""

    stack: str


class ProvisionOutputs(_Document):
    """`provision outputs --json`: the stack's outputs as Pulumi gives them."""

    stack: str
    outputs: dict[str, Any]


class ProbeDocument(_Document):
    """`probe --json`: the reports of every site probed."""

    healthy: bool
    min_ser: float
    sites: list[ProbeReport]


class OutcomeDocument(Outcome):
    """`upgrade`, `rollout resume|advance|abort --json`: where the drive stopped."""

    journal: str


class RunStatusDocument(Run):
    """`rollout status --json`."""

    lock_holder: str | None
    report_html: str | None = None  # with --html: the report page written


class RunList(_Document):
    """`rollout history --json` without a run id: the runs of the journal, newest first."""

    journal: str
    runs: list[RunSummary]


class RunEvents(_Document):
    """`rollout history RUN --json`: every journal line of one run."""

    journal: str
    run: str
    events: list[Event]


class Approval(_Document):
    """`rollout approve --json`."""

    run: str
    wave: int
    approved_by: str


class Steering(_Document):
    """`site drain|undrain --json`: what was done and every site's steering state after it."""

    message: str
    sites: dict[str, SiteTraffic]


class LabUp(_Document):
    """`lab up --json`."""

    inventory: str
    sites: int
    hosts: int


class LabDown(_Document):
    """`lab down --json`: the lab processes stopped."""

    stopped: list[str]


class FaultList(_Document):
    """`lab fault list --json`: the faults in place."""

    faults: list[Fault]


class FaultsCleared(_Document):
    """`lab fault clear --json`: the faults undone, most recent first."""

    cleared: list[Fault]


class TrafficStarted(_Document):
    """`lab traffic start --json`: the background caller."""

    pid: int
    rate: float
    started: float
    run_dir: str
    duration_s: int


class ReleaseBuilt(_Document):
    """`release build --json`."""

    bundle: str
    version: str
    files: int


class DeliveryOutcome(_Document):
    """One delivery of a test alert."""

    audience: str
    channel: str
    state: NotificationState
    attempts: int
    elapsed_s: float
    error: str | None


class AlertTest(_Document):
    """`alert test --json`."""

    ok: bool
    channel: str
    dedupe_key: str
    finished: bool
    store: str
    deliveries: list[DeliveryOutcome]


class IncidentList(_Document):
    """`incidents --json`: the most recent incidents, newest first."""

    store: str
    incidents: list[Incident]


class PsapNoticeView(_Document):
    """One notice of the PSAP clock: its deadline, when it was handed over, its deliveries."""

    notice: NoticeKind
    due_at: datetime | None  # the closing notice is due at resolution
    sent_at: datetime | None
    on_time: bool | None  # None: not sent yet, or the closing notice (sent at resolution, no deadline)
    deliveries: list[Delivery]


class PsapClockView(_Document):
    """An incident's PSAP notification clock (docs/OPERATIONS.md)."""

    site: str | None
    numbers: list[str]
    started_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    notices: list[PsapNoticeView]


class FailedCallers(_Document):
    """`incidents callers INCIDENT --json`: the public's calls that failed at the incident's
    site(s) (or found no site) from `start` to `end` (unix times), oldest first. Personal data."""

    journal: str
    incident: str
    sites: list[str]
    start: float
    end: float
    open: bool
    calls: list[FailedCall]


class IncidentShow(_Document):
    """`incidents show INCIDENT --json`: one incident, its deliveries and its PSAP clock
    (`psap_clock` is null when the incident never affected emergency routing)."""

    store: str
    incident: Incident
    psap_clock: PsapClockView | None
