"""The rollout policy document (policies/*.yml): the gate section and the rollout section.

The rollout section only shapes a plan (order, canary, bakes, approvals, freeze windows, the
version-diversity reserve). Some keys exist only so that a plan can refuse them by name:
`skip_canary: true` and `sites_per_wave` other than 1 break the rules `canary-first` and
`one-site-at-a-time`, which are hard limits of the engine, not policy values. Those rules need
the estate, so they are applied by `orchestrator.rollout.plan.build_plan`, not here; this module
refuses only what is malformed on its own (types, ranges, time zones, window shapes).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.policy.guard import GuardPolicy
from orchestrator.policy.model import GatePolicy
from orchestrator.policy.watch import WatchPolicy

# A longer duration is almost certainly milliseconds typed as seconds.
MAX_DURATION_S = 90 * 24 * 3600.0
Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION_S, allow_inf_nan=False)]

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError (naming an example) when it is not one."""
    known = _known_zones()
    # An empty set means no tz database was found at all: let ZoneInfo say so below.
    if known and name not in known:
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris or UTC)")
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfo raises several types (not found, bad path, bad file)
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris or UTC)") from None


def parse_clock(text: str) -> time | None:
    """'HH:MM' as a time; '24:00' (end of day) as None."""
    if text == "24:00":
        return None
    m = _CLOCK.match(text)
    if not m:
        raise ValueError(f"expected a time 'HH:MM', got {text!r}")
    return time(int(m.group(1)), int(m.group(2)))


class FreezeWindow(_Strict):
    """A period in which no rollout may start or advance.

    Either one-off (`start`, `end`: local date-times in `timezone`, end excluded) or weekly
    (`days`, `start_time`, `end_time`: local wall-clock times; an end at or before the start
    means the next day; `end_time: '24:00'` is the end of the day)."""

    timezone: str = Field(description="IANA time zone of the times below, e.g. Europe/Paris")
    reason: str = Field(default="", max_length=200)
    start: datetime | None = None
    end: datetime | None = None
    days: tuple[Day, ...] = ()
    start_time: str | None = None
    end_time: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _local_datetime(cls, value: Any) -> Any:
        # pydantic would read a number as a Unix timestamp: surely not what a policy author meant.
        if isinstance(value, bool | int | float):
            raise ValueError("expected a local date and time such as 2026-12-24 18:00")
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time())
        return value

    @field_validator("start", "end")
    @classmethod
    def _no_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("write a local time without offset: the window's `timezone` says where it is")
        return value

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 18:00 as the base-60 number 1080.
            raise ValueError(f"expected a quoted time such as '18:00' (YAML read an unquoted time as {value})")
        return value

    @field_validator("start_time")
    @classmethod
    def _start_clock(cls, value: str | None) -> str | None:
        if value is not None and (value == "24:00" or parse_clock(value) is None):
            raise ValueError("start_time must be 'HH:MM' between 00:00 and 23:59")
        return value

    @field_validator("end_time")
    @classmethod
    def _end_clock(cls, value: str | None) -> str | None:
        if value is not None:
            parse_clock(value)
        return value

    @model_validator(mode="after")
    def _shape(self) -> FreezeWindow:
        one_off = self.start is not None or self.end is not None
        weekly = bool(self.days) or self.start_time is not None or self.end_time is not None
        if one_off and weekly:
            raise ValueError("a window is either one-off (start, end) or weekly (days, start_time, end_time), "
                             "not both")
        if weekly:
            if not self.days:
                raise ValueError("a weekly window needs `days` (e.g. [sat, sun])")
            if (self.start_time or "00:00") == (self.end_time or "24:00"):
                raise ValueError("start_time equals end_time: for whole days use 00:00 to 24:00")
            return self
        if self.start is None or self.end is None:
            raise ValueError("a window needs either `start` and `end` (one-off) or `days` (weekly)")
        try:
            start, end = (t.replace(tzinfo=self.tz).astimezone(UTC) for t in (self.start, self.end))
        except (OverflowError, ValueError):
            raise ValueError("start or end is out of the range of dates") from None
        # Compared as instants: local times around a DST change do not order like wall clocks.
        if end <= start:
            raise ValueError("end must be after start")
        return self

    @property
    def weekly(self) -> bool:
        """True for a weekly window, False for a one-off."""
        return bool(self.days)

    @property
    def tz(self) -> ZoneInfo:
        """The window's time zone."""
        return zone(self.timezone)

    @property
    def clock_start(self) -> time:
        """Start of a weekly window (default 00:00)."""
        return parse_clock(self.start_time or "00:00") or time()

    @property
    def clock_end(self) -> time | None:
        """End of a weekly window; None means midnight at the end of the day (the default)."""
        return parse_clock(self.end_time or "24:00")

    def describe(self) -> str:
        """One line for people, e.g. 'sat 18:00-24:00 Europe/Paris (weekend traffic)'."""
        if self.weekly:
            span = f"{','.join(self.days)} {self.start_time or '00:00'}-{self.end_time or '24:00'}"
        else:
            assert self.start is not None and self.end is not None  # the validator guarantees it
            span = f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M}"
        return f"{span} {self.timezone}" + (f" ({self.reason})" if self.reason else "")


class ReserveSection(_Strict):
    """The version-diversity reserve: K sites stay on their known-good release until the new
    release has run on every other site for `fleet_bake_s` seconds."""

    sites: int = Field(default=1, le=1000, description="K; 0 only when at most one site changes")
    fleet_bake_s: Seconds = 30.0
    site_names: tuple[str, ...] = Field(default=(), description="explicit reserve (default: the last K of the order)")
    standing_days: float = Field(
        default=0.0, ge=0, le=3650, allow_inf_nan=False,
        description="a standing reserve: the K sites keep their release until the target has taken live calls on "
                    "this estate for this many days (0: they change after the fleet bake)")

    @model_validator(mode="after")
    def _names(self) -> ReserveSection:
        if self.standing_days > 0 and self.sites < 1:
            raise ValueError("standing_days needs a reserve: sites is 0")
        if len(set(self.site_names)) != len(self.site_names):
            raise ValueError("site_names lists a site twice")
        if self.site_names and len(self.site_names) != self.sites:
            raise ValueError(f"site_names lists {len(self.site_names)} site(s) but sites is {self.sites}: "
                             "make them agree")
        return self


class RolloutSection(_Strict):
    """How a release moves across the estate. See docs/POLICIES.md."""

    order: tuple[str, ...] = Field(default=(), description="every site, in rollout order (empty: the estate's)")
    canary: str | None = Field(default=None, description="the first site (default: first of the order)")
    skip_canary: bool = Field(default=False, description="always refused: rule canary-first")
    sites_per_wave: int = Field(default=1, le=1000,
                                description="anything but 1 is refused: rule one-site-at-a-time")
    bake_s: Seconds = 10.0
    bake_overrides: dict[str, Seconds] = Field(default_factory=dict)
    canary_bake_s: Seconds | None = None
    approvals: tuple[int, ...] = Field(default=(), description="1-based waves that wait for an approval")
    freeze_windows: tuple[FreezeWindow, ...] = ()
    reserve: ReserveSection = ReserveSection()
    drain_timeout_s: float = Field(default=30.0, gt=0, le=24 * 3600, allow_inf_nan=False)
    stage_next: bool = Field(default=True, description="while a wave's site steps and bakes, stage the next "
                             "site (preflight, release installed beside the current one; nothing live changes)")
    guard: GuardPolicy = GuardPolicy()


class RolloutPolicy(BaseModel):
    """A whole policy file; the gate section drives `callfleet gate` and every rollout wave,
    the rollout section drives `callfleet plan` and `callfleet upgrade`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(default="default", min_length=1, max_length=64)
    description: str = ""
    gate: GatePolicy = GatePolicy()
    rollout: RolloutSection = RolloutSection()
    watch: WatchPolicy = WatchPolicy()
