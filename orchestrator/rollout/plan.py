"""The rollout plan: a pure function of the estate (observed releases), a policy and a target.

The plan printed by `callfleet plan` is the plan executed: its digest covers every field, the
run records it, and a run refuses to continue on a plan with another digest. A plan that would
break a guarantee is never built: `PlanRefused` names the rule (see `RULES`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import Estate, Site
from orchestrator.policy.rollout import DAYS, FreezeWindow, RolloutPolicy, RolloutSection

# The same shape as orchestrator.estate.model.ReleaseVersion.
_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

RULES: dict[str, str] = {
    "one-site-at-a-time": "a wave changes exactly one site: rollout.sites_per_wave must be 1 (a hard limit)",
    "canary-first": "wave 1 is the canary, a site of the estate not yet on the target; it cannot be skipped",
    "known-good-reserve": "K >= 1 sites keep their known-good release until the new one has baked fleet-wide "
                          "(with reserve.standing_days: until it has been live that many days), and at least one "
                          "site changes before them",
    "order-covers-every-site": "rollout.order, when given, lists every site of the estate exactly once",
    "approval-wave-exists": "rollout.approvals names waves of the plan (1 to the number of waves)",
    "site-inconsistent": "every host of a site runs the same release; a human settles a mixed site first",
    "target-release": "the target is a release version (letters, digits, . _ + -)",
    "sites-exist": "rollout.bake_overrides names sites of the estate",
    "limit-sites-exist": "--limit names sites of the estate",
}


class PlanRefused(InvalidInput):
    """A request or policy that would break a rollout rule; `.rule` is the rule's id."""

    def __init__(self, rule: str, detail: str, *, hint: str | None = None) -> None:
        super().__init__(f"refused by rule {rule}: {detail}", hint=hint)
        self.rule = rule
        self.detail = detail


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrafficStep(_Frozen):
    """One live-traffic step of a wave: the site's edge weight (percent of its full share), then a bake."""

    weight: int
    bake_s: float


class Wave(_Frozen):
    """One site taken from its current release to the target."""

    index: int
    site: str
    role: Literal["canary", "wave", "reserve"]
    from_releases: tuple[str, ...]
    to_release: str
    traffic_steps: tuple[TrafficStep, ...]
    bake_s: float
    approval_required: bool
    not_before_fleet_bake_s: float


class Plan(_Frozen):
    """The ordered plan. Validation re-checks its shape and digest, so a plan read back from a
    journal is the plan that was printed. `limit` is the `--limit` it was narrowed to (None: the
    whole estate); `unlimited` the sites outside it, which this plan leaves as they are."""

    target: str
    policy: str
    estate: str
    waves: tuple[Wave, ...]
    skipped: tuple[str, ...]
    reserve: tuple[str, ...]
    standing: tuple[str, ...] = Field(default=(), description="the standing reserve: sites this plan leaves on "
                                      "their release until the target has been live reserve.standing_days")
    limit: tuple[str, ...] | None = None
    unlimited: tuple[str, ...] = ()
    digest: str

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        sites = [w.site for w in self.waves]
        if [w.index for w in self.waves] != list(range(1, len(self.waves) + 1)):
            raise ValueError("wave indices must run 1, 2, 3, ...")
        if len(set(sites)) != len(sites) or set(sites) & set(self.skipped):
            raise ValueError("a site appears in two waves, or is both changed and skipped")
        roles = [w.role for w in self.waves]
        if roles and (roles[0] != "canary" or "canary" in roles[1:]):
            raise ValueError("wave 1, and only wave 1, is the canary")
        tail = tuple(w.site for w in self.waves if w.role == "reserve")
        if tail != self.reserve or roles[len(roles) - len(tail):] != ["reserve"] * len(tail):
            raise ValueError("the reserve waves are the last waves and match `reserve`")
        if self.limit is None and self.unlimited:
            raise ValueError("only a plan narrowed by a limit leaves sites out")
        if set(self.standing) & (set(sites) | set(self.skipped) | set(self.unlimited)):
            raise ValueError("a standing reserve site is also changed, skipped or outside the limit")
        planned = set(sites) | set(self.skipped) | set(self.standing)
        if set(self.unlimited) & planned or (self.limit is not None and not planned <= set(self.limit)):
            raise ValueError("a site outside the limit is in the plan")
        expected = plan_digest(digest_body(self))
        if self.digest != expected:
            raise ValueError("digest does not match the plan's content")
        return self


def digest_body(plan: Plan) -> dict[str, Any]:
    """The fields a digest covers: all but the digest; a whole-estate plan's without `limit` and
    `unlimited`, and a plan without a standing reserve without `standing`, so its digest is the
    one it had before plans could be limited or hold a standing reserve."""
    exclude = {"digest"} | ({"limit", "unlimited"} if plan.limit is None else set()) | \
        ({"standing"} if not plan.standing else set())
    return plan.model_dump(mode="json", exclude=exclude)


def plan_digest(plan_without_digest: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no spaces) of a plan's fields but the digest."""
    canonical = json.dumps(plan_without_digest, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                           allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


DAY_S = 86_400.0


def build_plan(*, estate: Estate, policy: RolloutPolicy, target: str, limit: Sequence[str] | None = None,
               target_live_s: float = 0.0) -> Plan:
    """The ordered plan taking every site of `estate` not yet wholly on `target` to `target`:
    the canary first, one site per wave, the reserve last (each reserve wave waiting for the new
    release to have run fleet-wide for `reserve.fleet_bake_s`). Sites already on the target are
    skipped; when none is left the plan has no waves. Raises PlanRefused naming the rule broken.

    With `limit` (site names), only those sites may change; the others are left as they are
    (`unlimited`). The canary is rollout.canary when inside the limit, else the first limited site
    of the order; a rollout.canary outside the limit that does not run `target` yet is refused
    (the release has not been through its canary). Sites outside the limit still on their
    release count towards the reserve's K; only the rest is taken from the limited sites.

    With `reserve.standing_days` the reserve is a standing one: while the target has taken live
    calls on this estate for less than that (`target_live_s`, from the journal), its K sites are
    left out of the plan (`standing`), so a latent bug waking weeks later still has a release to
    fail over to; once it has, they are planned as ordinary waves, the first of them this plan's
    canary (the release went through its canary when it first went out)."""
    ro = policy.rollout
    _check_request(estate=estate, rollout=ro, target=target)
    order = _order(estate=estate, rollout=ro)
    scope = _scope(estate=estate, order=order, limit=limit)
    unlimited = tuple(s for s in order if s not in scope)
    skipped = tuple(s for s in scope if estate.site(s).releases == {target})
    to_change = [s for s in scope if s not in skipped]
    held = tuple(s for s in unlimited if estate.site(s).releases != {target})
    young = ro.reserve.standing_days > 0 and target_live_s < ro.reserve.standing_days * DAY_S
    proven = ro.reserve.standing_days > 0 and not young
    standing: tuple[str, ...] = ()
    if young:
        first = _canary(estate=estate, rollout=ro, target=target, scope=scope, to_change=to_change)
        standing = _reserve(estate=estate, rollout=ro, target=target, canary=first, to_change=to_change, held=held,
                            standing=True)
        to_change = [s for s in to_change if s not in standing]
    canary = _canary(estate=estate, rollout=ro, target=target, scope=scope, to_change=to_change)
    if proven and to_change and canary in skipped:
        canary = to_change[0]  # proven live for standing_days: the first site left is this plan's canary
    if to_change and canary in skipped:
        raise PlanRefused("canary-first", f"the canary {canary} already runs {target} while "
                          f"{', '.join(to_change)} do not: a new canary would be skipped",
                          hint="resume the run that upgraded it (`callfleet rollout resume`), or set "
                               "rollout.canary to a site not yet on the target")
    reserve = () if young else _reserve(estate=estate, rollout=ro, target=target, canary=canary,
                                        to_change=to_change, held=held, proven=proven)
    sequence = ([canary] if to_change else []) + \
        [s for s in to_change if s != canary and s not in reserve] + list(reserve)
    for wave in ro.approvals:
        if to_change and not 1 <= wave <= len(sequence):
            raise PlanRefused("approval-wave-exists", f"rollout.approvals names wave {wave}, but the plan has "
                              f"waves 1 to {len(sequence)}")
    steps = tuple(TrafficStep(weight=w, bake_s=policy.gate.live_steps.bake_s) for w in policy.gate.live_steps.weights)
    waves = tuple(
        Wave(index=i, site=name, role="canary" if i == 1 else "reserve" if name in reserve else "wave",
             from_releases=tuple(sorted(estate.site(name).releases)), to_release=target, traffic_steps=steps,
             bake_s=_bake(rollout=ro, site=name, canary=i == 1), approval_required=i in ro.approvals,
             not_before_fleet_bake_s=ro.reserve.fleet_bake_s if name in reserve else 0.0)
        for i, name in enumerate(sequence, start=1)
    )
    draft = Plan.model_construct(target=target, policy=policy.name, estate=estate.name, waves=waves,
                                 skipped=skipped, reserve=reserve, standing=standing,
                                 limit=None if limit is None else scope,
                                 unlimited=unlimited, digest="")
    return Plan.model_validate({**draft.model_dump(mode="json"), "digest": plan_digest(digest_body(draft))})


def _scope(*, estate: Estate, order: list[str], limit: Sequence[str] | None) -> tuple[str, ...]:
    """The sites this plan may change, in rollout order: every site, or those of `limit`."""
    if limit is None:
        return tuple(order)
    names = {s.name for s in estate.sites}
    for name in limit:
        if name not in names:
            raise PlanRefused("limit-sites-exist", f"--limit names {name!r}, not a site of estate {estate.name} "
                              f"(sites: {', '.join(s.name for s in estate.sites)})")
    if not limit:
        raise PlanRefused("limit-sites-exist", "--limit names no site")
    return tuple(s for s in order if s in limit)


def _canary(*, estate: Estate, rollout: RolloutSection, target: str, scope: tuple[str, ...],
            to_change: list[str]) -> str:
    """The canary: rollout.canary, else the first site of the order (of the limited sites)."""
    if rollout.canary is None or rollout.canary in scope:
        return rollout.canary or scope[0]
    if estate.site(rollout.canary).releases != {target}:
        raise PlanRefused("canary-first", f"the canary {rollout.canary} is outside --limit and does not run "
                          f"{target} yet: every rollout of a release starts with its canary",
                          hint=f"add {rollout.canary} to --limit, or take it first: --limit {rollout.canary}")
    # The policy's canary has run the release already: this limited run's first wave is its canary.
    return to_change[0] if to_change else scope[0]


def _check_request(*, estate: Estate, rollout: RolloutSection, target: str) -> None:
    """Rules that hold whatever the estate's progress."""
    if not _RELEASE.match(target):
        raise PlanRefused("target-release", f"{target!r} is not a release version")
    for site in estate.sites:
        _check_consistent(site)
    if rollout.sites_per_wave != 1:
        raise PlanRefused("one-site-at-a-time", f"rollout.sites_per_wave is {rollout.sites_per_wave}: one site "
                          "in flight at a time is a hard limit, not a policy value",
                          hint="remove rollout.sites_per_wave (or set it to 1)")
    if rollout.skip_canary:
        raise PlanRefused("canary-first", "rollout.skip_canary is set: every rollout starts with a canary",
                          hint="remove rollout.skip_canary; a short canary bake is rollout.canary_bake_s")
    names = [s.name for s in estate.sites]
    if rollout.canary is not None and rollout.canary not in names:
        raise PlanRefused("canary-first", f"rollout.canary {rollout.canary!r} is not a site of estate "
                          f"{estate.name} (sites: {', '.join(names)})")
    for name in rollout.bake_overrides:
        if name not in names:
            raise PlanRefused("sites-exist", f"rollout.bake_overrides names {name!r}, not a site of estate "
                              f"{estate.name} (sites: {', '.join(names)})")
    for wave in rollout.approvals:
        if wave < 1:
            raise PlanRefused("approval-wave-exists", f"rollout.approvals names wave {wave}: waves count from 1")
    if rollout.reserve.sites < 0:
        raise PlanRefused("known-good-reserve", f"rollout.reserve.sites is {rollout.reserve.sites}: "
                          "a count of sites, 0 or more")


def _check_consistent(site: Site) -> None:
    if len(site.releases) > 1:
        detail = ", ".join(f"{h.name}={h.release}" for h in site.hosts)
        raise PlanRefused("site-inconsistent", f"site {site.name} runs several releases ({detail})",
                          hint="settle the site on one release (finish or roll back its upgrade), then plan again")


def _order(*, estate: Estate, rollout: RolloutSection) -> list[str]:
    """The rollout order: the policy's, which must be a permutation of the estate's sites, or the estate's."""
    names = [s.name for s in estate.sites]
    if not rollout.order:
        return names
    seen: set[str] = set()
    for name in rollout.order:
        if name not in names:
            raise PlanRefused("order-covers-every-site", f"rollout.order names {name!r}, not a site of estate "
                              f"{estate.name} (sites: {', '.join(names)})")
        if name in seen:
            raise PlanRefused("order-covers-every-site", f"rollout.order lists {name!r} twice")
        seen.add(name)
    missing = [n for n in names if n not in seen]
    if missing:
        raise PlanRefused("order-covers-every-site", f"rollout.order leaves out {', '.join(missing)}: "
                          "every site must have its place")
    return list(rollout.order)


def _reserve(*, estate: Estate, rollout: RolloutSection, target: str, canary: str,
             to_change: list[str], held: tuple[str, ...] = (), standing: bool = False,
             proven: bool = False) -> tuple[str, ...]:
    """The reserve sites, in rollout order: explicit, else the last K sites to change (never the canary).
    `held` are sites outside a limit that keep their release: they count towards K.

    `standing`: the standing reserve of a young release (it may be every site left to change:
    then nothing changes until the release is old enough). `proven`: the release has been live
    for standing_days, so a reserve as large as what is left to change is no reserve at all."""
    res = rollout.reserve
    names = [s.name for s in estate.sites]
    for name in res.site_names:
        if name not in names:
            raise PlanRefused("known-good-reserve", f"rollout.reserve.site_names names {name!r}, not a site of "
                              f"estate {estate.name}")
        if name == canary:
            raise PlanRefused("known-good-reserve", f"{name} is both the canary and in the reserve")
    if not to_change:
        return ()
    for name in res.site_names:
        if name not in to_change and name not in held:
            raise PlanRefused("known-good-reserve", f"reserve site {name} already runs {target}: it cannot keep "
                              "a known-good release")
    # The reserve sites this plan must hold back itself: K less those a limit leaves untouched.
    inside = [s for s in to_change if s in res.site_names] if res.site_names else []
    need = len(inside) if res.site_names else max(0, res.sites - len(held))
    if need >= len(to_change) and (standing or proven):
        return tuple(to_change) if standing else ()
    if need >= len(to_change) and need > 0:
        held_note = f" ({len(held)} more kept outside --limit)" if held else ""
        raise PlanRefused("known-good-reserve", f"rollout.reserve.sites is {res.sites}{held_note} but "
                          f"{len(to_change)} site(s) need {target}: at least one must change (and bake) before the "
                          "reserve",
                          hint="a last site may be changed alone with rollout.reserve.sites: 0" if
                          len(to_change) == 1 else None)
    if res.sites < 1 and len(to_change) > 1:
        raise PlanRefused("known-good-reserve", f"rollout.reserve.sites is 0 with {len(to_change)} sites to "
                          f"change: the whole estate would run {target} before it has baked anywhere",
                          hint="keep rollout.reserve.sites at 1 or more")
    if res.sites >= 1 and res.fleet_bake_s <= 0:
        raise PlanRefused("known-good-reserve", "rollout.reserve.fleet_bake_s is 0: a reserve that does not wait "
                          "for the fleet-wide bake protects nothing")
    if res.site_names:
        return tuple(inside)
    candidates = [s for s in to_change if s != canary]
    return tuple(candidates[len(candidates) - need:]) if need else ()


def _bake(*, rollout: RolloutSection, site: str, canary: bool) -> float:
    """Bake after full weight. Combining keys never shortens a bake: for the canary, the longer of
    canary_bake_s and the site's override applies."""
    if canary and rollout.canary_bake_s is not None:
        return max(rollout.canary_bake_s, rollout.bake_overrides.get(site, 0.0))
    return rollout.bake_overrides.get(site, rollout.bake_s)


def freeze_occurrence(window: FreezeWindow, now: datetime) -> tuple[datetime, datetime] | None:
    """The occurrence of `window` containing `now` as (start, end) in UTC, end excluded; None if
    `now` is outside it. Local times are wall-clock times in the window's zone: a time repeated when
    clocks go back means its first occurrence, a time skipped when they go forward means the instant
    as far after the jump (so a window entirely inside a skipped hour is empty that day)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware")
    tz = window.tz
    instant = now.astimezone(UTC)
    if not window.weekly:
        assert window.start is not None and window.end is not None  # the model guarantees it
        start = window.start.replace(tzinfo=tz).astimezone(UTC)
        end = window.end.replace(tzinfo=tz).astimezone(UTC)
        return (start, end) if start <= instant < end else None
    local_day = instant.astimezone(tz).date()
    clock_start, clock_end = window.clock_start, window.clock_end
    # An overnight window that began yesterday may still be running.
    for day in (local_day - timedelta(days=1), local_day):
        if DAYS[day.weekday()] not in window.days:
            continue
        start = datetime.combine(day, clock_start, tzinfo=tz)
        if clock_end is None:
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        else:
            end_day = day if clock_end > clock_start else day + timedelta(days=1)
            end = datetime.combine(end_day, clock_end, tzinfo=tz)
        # Compare in UTC: aware datetimes sharing a tzinfo compare by wall clock, ignoring DST.
        s, e = start.astimezone(UTC), end.astimezone(UTC)
        if s <= instant < e:
            return s, e
    return None


def active_freeze(policy: RolloutPolicy, now: datetime) -> FreezeWindow | None:
    """The first freeze window of `policy` in force at `now` (timezone-aware), or None."""
    for window in policy.rollout.freeze_windows:
        if freeze_occurrence(window, now) is not None:
            return window
    return None
