"""The alert event every producer hands to the notifier, and the delivery states.

Producers are the rollout engine (failed gate, rollback, inconclusive pause, stuck
rollout) and the supervisor (incident opened, updated, resolved). An alert carries
facts, never prose: the templates turn facts into French or English text per audience.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from orchestrator.alerting.psap import NoticeKind

# A substitute number the public can dial while the short number is down: 10 digits
# (French national format, e.g. 0472000000); spaces and dots are tolerated on input.
SubstituteNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Figure = float | int | str | bool | None


class Frozen(BaseModel):
    """Immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class AlertKind(StrEnum):
    """What happened: the rollout engine's and the supervisor's events, plus a test."""

    GATE_FAILED = "gate_failed"
    ROLLED_BACK = "rolled_back"
    INCONCLUSIVE_PAUSE = "inconclusive_pause"
    ROLLOUT_STUCK = "rollout_stuck"
    FLEET_GUARD = "fleet_guard"  # an upgraded site failing after its own gate: the fleet goes back
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_UPDATED = "incident_updated"
    INCIDENT_RESOLVED = "incident_resolved"
    PSAP_NOTICE = "psap_notice"  # to the `psaps` audience only, on the notification clock
    TEST = "test"


class Severity(StrEnum):
    """How urgent; audiences set the lowest severity they want to hear about."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order for threshold comparisons (info < warning < critical)."""
        return (Severity.INFO, Severity.WARNING, Severity.CRITICAL).index(self)


class Action(StrEnum):
    """What callfleet already did about it (templates translate each one)."""

    DRAINED = "drained"
    ROLLED_BACK = "rolled_back"
    FAILED_OVER = "failed_over"
    ROLLOUT_HALTED = "rollout_halted"
    ROLLOUT_PAUSED = "rollout_paused"
    TRAFFIC_RESTORED = "traffic_restored"
    UNDRAINED = "undrained"


class ReleaseChange(Frozen):
    """The release move involved (from the known-good release to the new one)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_release: ShortText | None = Field(default=None, alias="from")
    to_release: ShortText | None = Field(default=None, alias="to")


class Failing(Frozen):
    """What is failing: emergency numbers and sites (either may be empty, not both
    for an incident; a test alert has neither)."""

    numbers: tuple[ShortText, ...] = ()
    sites: tuple[ShortText, ...] = ()


class PsapFacts(Frozen):
    """The clock's facts a PSAP notice carries (the provider, contact and areas come from
    the alerting config's `psap` section when the notice is rendered)."""

    notice: NoticeKind
    discovered_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    due_by: AwareDatetime
    next_update_by: AwareDatetime | None = None  # the follow-up's deadline, while it is still owed
    late: bool = False


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Alert(Frozen):
    """One event to tell people about.

    `incident_id` groups the alerts of one incident (opened, updated, resolved); it
    defaults to the failing sites and numbers. `dedupe_key` is what suppresses a storm:
    the same key is delivered once per audience and channel within the configured
    window; it defaults to `<incident_id>:<kind>`.
    """

    kind: AlertKind
    severity: Severity
    failing: Failing = Failing()
    since: AwareDatetime
    release: ReleaseChange = ReleaseChange()
    actions: tuple[Action, ...] = ()
    evidence: dict[str, Figure] = Field(default_factory=dict)
    substitute_numbers: tuple[SubstituteNumber, ...] = ()
    note: Annotated[str, StringConstraints(max_length=500)] = ""
    incident_id: ShortText = ""
    dedupe_key: ShortText = ""
    raised_at: AwareDatetime = Field(default_factory=_utc_now)
    psap: PsapFacts | None = None  # set on (and only on) a psap_notice

    @field_validator("since", "raised_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("substitute_numbers", mode="before")
    @classmethod
    def _strip_separators(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(v.replace(" ", "").replace(".", "") if isinstance(v, str) else v for v in value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if not data.get("incident_id"):
            failing = data.get("failing") or {}
            if isinstance(failing, Failing):
                sites, numbers = failing.sites, failing.numbers
            else:
                sites, numbers = failing.get("sites", ()), failing.get("numbers", ())
            kind = str(data.get("kind", ""))
            scope = "+".join(sorted(sites)) or "estate"
            data["incident_id"] = f"{scope}/{'+'.join(sorted(numbers)) or 'all'}" if kind != "test" else "test"
        if not data.get("dedupe_key"):
            data["dedupe_key"] = f"{data['incident_id']}:{data.get('kind', '')}"
        return data

    @model_validator(mode="after")
    def _psap_facts(self) -> Alert:
        if (self.kind is AlertKind.PSAP_NOTICE) != (self.psap is not None):
            raise ValueError("a psap_notice alert carries `psap` facts, and only it does")
        return self


class NotificationState(StrEnum):
    """Life of one delivery (one audience on one channel).

    queued: recorded, not yet accepted by the channel; sent: the server accepted it
    (HTTP 2xx, SMTP 250, SMPP submit_sm_resp OK); acknowledged: the far end confirmed
    delivery (SMPP delivery receipts DELIVRD for every message); failed: retries
    exhausted or a permanent refusal.
    """

    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class Delivery(Frozen):
    """The outcome of one delivery, as recorded in the store."""

    id: int
    alert_id: int
    incident_id: str
    dedupe_key: str
    audience: str
    channel: str
    channel_type: str
    state: NotificationState
    attempts: int
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
