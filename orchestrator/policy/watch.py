"""The `watch:` section of a policy file: what `callfleet watch` measures, when it raises an
incident, and what it may do about one (docs/WATCH.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from orchestrator.alerting.psap import PsapDeadlines

# A substitute number the public can dial while the short number is down (as in alerts).
SubstituteNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


# The numbers CPCE D.98-8-9 names (SAMU, police, fire, European emergency number).
FRENCH_NUMBERS = ("15", "17", "18", "112")
# An emergency number as dialled (15, 17, 18, 112, 114, 116117...).
NumberKey = Annotated[str, StringConstraints(pattern=r"^[0-9]{2,8}$")]


class E425Threshold(BaseModel):
    """Alert thresholds of one number for the monthly report (ITU-T E.425 ratios)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    asr_min: Ratio = Field(default=0.9, description="lowest answer-seizure ratio over an interval")
    ner_min: Ratio = Field(default=0.95, description="lowest network effectiveness ratio over an interval")
    min_attempts: int = Field(default=20, ge=1, le=10_000_000,
                              description="seizures an interval needs before its ratios are judged")


class E425Policy(BaseModel):
    """The monthly report's thresholds: `default` for every number without its own entry
    (and for the live counts, which the edge does not split by number)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: E425Threshold = Field(default_factory=E425Threshold)
    numbers: dict[NumberKey, E425Threshold] = Field(
        default_factory=lambda: {n: E425Threshold() for n in FRENCH_NUMBERS},
        description="per-number thresholds (15, 17, 18, 112, ...); these numbers are always reported")

    def for_number(self, number: str) -> E425Threshold:
        """The thresholds of one number."""
        return self.numbers.get(number, self.default)


class WatchPolicy(BaseModel):
    """The continuous supervisor's thresholds, hysteresis, probe budget and permissions.

    Every round (each `interval_s`) probes every site and every emergency number with
    `calls_per_number` calls, reads the live window of each site, and judges each site over
    the last `window_s` seconds. `open_after` bad rounds in a row open an incident,
    `resolve_after` good rounds in a row resolve it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_s: float = Field(default=30.0, ge=0.5, le=3600, allow_inf_nan=False,
                              description="seconds between the starts of two rounds")
    window_s: float = Field(default=120.0, gt=0, le=24 * 3600, allow_inf_nan=False,
                            description="sliding window of probe results and live metrics")
    calls_per_number: int = Field(default=10, ge=1, le=100, description="probe calls per number per site per round")
    probe_rate: float = Field(default=10.0, gt=0, le=200, allow_inf_nan=False,
                              description="probe calls/s per site, all numbers together")
    parallel_sites: int = Field(default=2, ge=1, le=16, description="sites probed at the same time")
    min_probe_calls: int = Field(default=10, ge=1, le=100_000,
                                 description="probe calls per number in the window for a verdict")
    ser_min: Ratio = Field(default=0.95, description="lowest SER per number (probes)")
    srd_p95_max_ms: float = Field(default=1000.0, gt=0, le=60_000, allow_inf_nan=False,
                                  description="highest setup delay p95 per number (probes)")
    live_metrics: bool = Field(default=True, description="read live metrics (needs the inventory's metrics URL)")
    min_live_calls: float = Field(default=20.0, ge=0, le=10_000_000, allow_inf_nan=False,
                                  description="live attempts in the window for a live verdict")
    asr_min: Ratio = Field(default=0.9, description="lowest live answer-seizure ratio of a site")
    live_srd_p95_max_ms: float = Field(default=2000.0, gt=0, le=60_000, allow_inf_nan=False,
                                       description="highest live setup delay p95 of a site")
    open_after: int = Field(default=2, ge=1, le=100, description="bad rounds in a row that open an incident")
    resolve_after: int = Field(default=3, ge=1, le=100, description="good rounds in a row that resolve it")
    auto_drain: bool = Field(default=True, description="drain a failing site")
    auto_failover: bool = Field(default=True, description="when every site of one release fails and sites of "
                                "another release are healthy, drain the failing release's sites")
    max_drained: int = Field(default=2, ge=0, le=1000, description="most sites drained at once, whoever drained them "
                           "(a release failover takes the whole failing release out regardless)")
    min_active_sites: int = Field(default=1, ge=1, le=1000, description="sites that always stay active")
    release_refresh_s: float = Field(default=300.0, ge=0, le=24 * 3600, allow_inf_nan=False,
                                     description="how often each host's release is read over SSH (0: the inventory's)")
    leader_lease_s: float | None = Field(
        default=None, gt=0, le=24 * 3600, allow_inf_nan=False,
        description="several watchers on one store: how long the leader's lease lasts without renewal "
                    "(a standby takes over within leader_lease_s + interval_s); default 3 x interval_s")
    stats_interval_s: int = Field(default=300, ge=10, le=3600,
                                  description="the call statistics' interval (seconds, divides an hour)")
    failed_callers_retention_days: float = Field(
        default=30.0, gt=0, le=3660, allow_inf_nan=False,
        description="how long the failed callers (personal data, from the edge) are kept in the store")
    e425: E425Policy = Field(default_factory=E425Policy,
                             description="monthly report thresholds per number (docs/REGULATORY.md)")
    substitute_numbers: tuple[SubstituteNumber, ...] = Field(
        default=(), description="10-digit numbers to publish while a short number is down (in the alerts)")
    psap_notice: PsapDeadlines = Field(
        default=PsapDeadlines(), description="the PSAP notification clock: initial notice and follow-up deadlines "
        "from the incident's opening (FCC 47 CFR 4.9(h): 30 min and 2 h)")

    @model_validator(mode="after")
    def _coherent(self) -> WatchPolicy:
        if 3600 % self.stats_interval_s:
            raise ValueError(f"stats_interval_s ({self.stats_interval_s}) does not divide an hour: an interval "
                             "would straddle two days or months")
        if self.window_s < self.interval_s:
            raise ValueError(f"window_s ({self.window_s:g}) is shorter than interval_s ({self.interval_s:g}): "
                             "the window would hold no round")
        if self.leader_lease_s is not None and self.leader_lease_s < 2 * self.interval_s:
            raise ValueError(f"leader_lease_s ({self.leader_lease_s:g}) is shorter than 2 x interval_s "
                             f"({self.interval_s:g}): the leader renews once a round and would lose its lease "
                             "to one slow round")
        rounds = max(1, int(self.window_s // self.interval_s))
        if self.min_probe_calls > self.calls_per_number * rounds:
            raise ValueError(f"min_probe_calls ({self.min_probe_calls}) exceeds the calls a window holds "
                             f"({self.calls_per_number} x {rounds} rounds): no verdict would ever be reached")
        return self

    @property
    def lease_s(self) -> float:
        """The leader lease in effect."""
        return self.leader_lease_s if self.leader_lease_s is not None else 3 * self.interval_s
