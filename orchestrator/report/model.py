"""The report of one rollout: what happened, wave by wave, and why it stopped."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from orchestrator.gate.verdict import Verdict
from orchestrator.rollout.machine import Phase


class Frozen(BaseModel):
    """Immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RunVerdict(StrEnum):
    """How the run ended (or that it has not)."""

    COMPLETED = "completed"
    HALTED = "halted"
    ABORTED = "aborted"
    IN_PROGRESS = "in_progress"


class WaveState(StrEnum):
    """What became of a wave."""

    DONE = "done"
    ROLLED_BACK = "rolled_back"
    HALTED = "halted"  # stopped without a rollback (nothing live was changed, or the rollback failed)
    ABORTED = "aborted"  # the run was aborted while at this wave
    IN_PROGRESS = "in_progress"
    NOT_REACHED = "not_reached"


class RunInfo(Frozen):
    """The run's identity."""

    id: str
    estate: str
    target: str
    actor: str
    created: float
    updated: float
    phase: Phase
    outcome: str | None
    plan_digest: str
    policy: str


class PhaseSpan(Frozen):
    """The run was in `phase` (at `wave`) from `start` to `end` (unix seconds; None: still there)."""

    phase: Phase
    wave: int
    site: str | None
    start: float
    end: float | None
    data: dict[str, str]  # what the transition recorded besides its origin (e.g. the gate verdict)


class TrafficPoint(Frozen):
    """A live traffic step: from `ts` the wave's site took `percent` of its full weight."""

    ts: float
    wave: int
    site: str
    step: int
    percent: int


class WaveReport(Frozen):
    """One wave of the plan and what became of it."""

    index: int
    site: str
    role: str
    from_releases: tuple[str, ...]
    to_release: str
    planned_steps: tuple[int, ...]
    state: WaveState
    start: float | None
    end: float | None


class Arm(Frozen):
    """One side (canary or baseline) of a comparison for one number."""

    calls: int
    failed: int
    ser: float | None
    failures: dict[str, int]
    srd_p50_ms: float | None
    srd_p95_ms: float | None


class StatKind(StrEnum):
    """The tests the gate journals."""

    FISHER = "fisher"  # one-sided Fisher exact test on failures, canary worse than baseline
    MANN_WHITNEY = "mann_whitney"  # one-sided Mann-Whitney U on setup delays
    POOLED_FISHER = "pooled_fisher"  # Fisher over every number together
    SEQUENTIAL = "sequential"  # an anytime-valid e-process (log e-value against its boundary)


class Statistic(Frozen):
    """A test's value against its boundary. For p-values the test fails below `boundary`
    (the policy's alpha); for sequential log e-values above it. `boundary` is None when
    the journal does not say (the policy file changed or is gone)."""

    kind: StatKind
    scope: str  # an emergency number, or "all"
    value: float | None
    boundary: float | None
    crossed: bool | None
    second: int | None = None  # sequential only: the look at which the boundary was crossed
    detail: str = ""


class NumberComparison(Frozen):
    """The canary against its baseline for one emergency number in one stage."""

    number: str
    verdict: Verdict
    reasons: tuple[str, ...]
    canary: Arm
    baseline: Arm
    srd_shift_ms: float | None
    statistics: tuple[Statistic, ...]


class LiveStep(Frozen):
    """One live traffic step as the metrics backend saw it (the public's calls at the site)."""

    step: int
    percent: int
    weight: int
    attempts: float
    answered: float
    failed: float
    failure_ratio: float | None
    srd_p95_ms: float | None
    codes: dict[str, float]


class StageReport(Frozen):
    """One gate stage."""

    stage: str
    verdict: Verdict
    reasons: tuple[str, ...]
    calls: int
    seconds: float
    baseline_sites: tuple[str, ...]
    numbers: tuple[NumberComparison, ...]
    pooled: tuple[Statistic, ...]  # the tests over every number together
    live_steps: tuple[LiveStep, ...]
    failing: bool  # this stage decided a non-PASS verdict


class GateReport(Frozen):
    """A gate (synthetic stages, or the live steps) of one wave."""

    wave: int
    site: str
    ts: float
    verdict: Verdict
    reasons: tuple[str, ...]
    baseline_sites: tuple[str, ...]
    calls: int
    stages: tuple[StageReport, ...]


class DecisionKind(StrEnum):
    """What a person (or a pipeline) decided."""

    APPROVAL = "approval"
    ABORT = "abort"


class HumanDecision(Frozen):
    """Who approved or aborted what, and when."""

    kind: DecisionKind
    by: str
    ts: float
    wave: int | None
    site: str | None


class RollbackReport(Frozen):
    """A rollback of a wave's site: the run's own (its wave failed), or one site of a fleet
    rollback (the fleet guard named a culprit, or `rollout undo`)."""

    wave: int
    site: str
    reason: str
    to_release: str | None
    started: float
    succeeded: bool | None  # None: not finished in the journal
    traffic_restored: bool
    fleet: bool = False  # one site of a fleet rollback


class AlertReport(Frozen):
    """One alert delivery (audience on a channel), or an alert the journal says failed."""

    kind: str
    audience: str | None
    channel: str | None
    state: str  # queued | sent | acknowledged | failed | suppressed, or "error" from the journal
    attempts: int | None
    ts: float
    error: str | None


class PublicImpact(Frozen):
    """Calls of the public at the wave's site during its live traffic steps (the metrics
    backend's count, as journalled by the live-steps stage)."""

    wave: int
    site: str
    attempts: float
    failed: float


class Finding(Frozen):
    """A decision the run took and why."""

    wave: int | None
    site: str | None
    what: str
    verdict: str
    why: tuple[str, ...]


class RolloutReport(Frozen):
    """Everything the report shows (`report --json`)."""

    run: RunInfo
    verdict: RunVerdict
    reason: str | None
    exit_code: int | None
    waves: tuple[WaveReport, ...]
    phases: tuple[PhaseSpan, ...]
    traffic: tuple[TrafficPoint, ...]
    gates: tuple[GateReport, ...]
    rollbacks: tuple[RollbackReport, ...]
    decisions: tuple[HumanDecision, ...]
    alerts: tuple[AlertReport, ...]
    alerts_source: str | None  # the alert store read, or None: deliveries not known
    public: tuple[PublicImpact, ...]
    findings: tuple[Finding, ...]
