"""The rollout plan (pure): canary first, one site per wave, the reserve last, skipped sites,
approvals, digests, each rule refused by id; freeze windows across time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import EmergencyNumber, Estate, Host, Site
from orchestrator.policy.rollout import FreezeWindow, RolloutPolicy
from orchestrator.rollout.plan import (
    DAY_S,
    RULES,
    Plan,
    PlanRefused,
    active_freeze,
    build_plan,
    digest_body,
    freeze_occurrence,
    plan_digest,
)

OLD, NEW = "5.6.0", "5.7.0"
SITES = ("paris", "lyon", "marseille", "rennes", "bordeaux", "lille")


def estate(releases: dict[str, str | tuple[str, ...]] | None = None, sites: tuple[str, ...] = SITES) -> Estate:
    """An estate of two-host sites, every host on OLD unless `releases` says otherwise (a tuple: per host)."""
    releases = releases or {}
    built = []
    for s, name in enumerate(sites, start=1):
        rel = releases.get(name, OLD)
        per_host = rel if isinstance(rel, tuple) else (rel, rel)
        hosts = tuple(Host(name=f"{name}-cs{h}", site=name, address=IPv4Address(f"192.0.2.{10 * s + h}"),
                           release=per_host[h - 1]) for h in (1, 2))
        built.append(Site(name=name, capacity_cps=400, weight=100, hosts=hosts))
    number = EmergencyNumber(number="112", label="EU", probe_route="9112", psap_uri="sip:192.0.2.250")
    return Estate(name="test", sites=tuple(built), numbers=(number,))


def policy(**rollout: Any) -> RolloutPolicy:
    return RolloutPolicy.model_validate({"name": "p", "rollout": rollout})


def plan(rollout: dict[str, Any] | None = None, releases: dict[str, Any] | None = None,
         sites: tuple[str, ...] = SITES, target: str = NEW, limit: tuple[str, ...] | None = None) -> Plan:
    return build_plan(estate=estate(releases, sites), policy=policy(**(rollout or {})), target=target,
                      limit=limit)


def shape(p: Plan) -> list[tuple[str, str]]:
    return [(w.site, w.role) for w in p.waves]


# --- ordering ---------------------------------------------------------------------------

ORDER_CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[tuple[str, str]], tuple[str, ...]]] = [
    ("estate order, last site in reserve", {}, {},
     [("paris", "canary"), ("lyon", "wave"), ("marseille", "wave"), ("rennes", "wave"), ("bordeaux", "wave"),
      ("lille", "reserve")], ()),
    ("policy order and canary moved first", {"order": list(reversed(SITES)), "canary": "rennes"}, {},
     [("rennes", "canary"), ("lille", "wave"), ("bordeaux", "wave"), ("marseille", "wave"), ("lyon", "wave"),
      ("paris", "reserve")], ()),
    ("canary at the end of the order is not the reserve", {"canary": "lille"}, {},
     [("lille", "canary"), ("paris", "wave"), ("lyon", "wave"), ("marseille", "wave"), ("rennes", "wave"),
      ("bordeaux", "reserve")], ()),
    ("two reserve sites", {"reserve": {"sites": 2}}, {},
     [("paris", "canary"), ("lyon", "wave"), ("marseille", "wave"), ("rennes", "wave"), ("bordeaux", "reserve"),
      ("lille", "reserve")], ()),
    ("explicit reserve, in rollout order, last", {"reserve": {"sites": 2, "site_names": ["marseille", "lyon"]}}, {},
     [("paris", "canary"), ("rennes", "wave"), ("bordeaux", "wave"), ("lille", "wave"), ("lyon", "reserve"),
      ("marseille", "reserve")], ()),
    ("sites on the target are skipped", {}, {"lyon": NEW, "lille": NEW},
     [("paris", "canary"), ("marseille", "wave"), ("rennes", "wave"), ("bordeaux", "reserve")], ("lyon", "lille")),
    ("two sites to change: canary then reserve", {}, {s: NEW for s in SITES[2:]},
     [("paris", "canary"), ("lyon", "reserve")], SITES[2:]),
    ("one site to change with reserve 0", {"canary": "lille", "reserve": {"sites": 0}},
     {s: NEW for s in SITES[:-1]}, [("lille", "canary")], SITES[:-1]),
    ("everything on the target: no waves", {}, {s: NEW for s in SITES}, [], SITES),
]


@pytest.mark.parametrize(("rollout", "releases", "expected", "skipped"),
                         [c[1:] for c in ORDER_CASES], ids=[c[0] for c in ORDER_CASES])
def test_waves_canary_first_one_site_each_reserve_last(rollout: dict[str, Any], releases: dict[str, Any],
                                                       expected: list[tuple[str, str]],
                                                       skipped: tuple[str, ...]) -> None:
    p = plan(rollout, releases)
    assert shape(p) == expected
    assert p.skipped == skipped
    assert [w.index for w in p.waves] == list(range(1, len(expected) + 1))
    assert p.reserve == tuple(site for site, role in expected if role == "reserve")
    # one site per wave, each site at most once, never a skipped one
    assert len({w.site for w in p.waves}) == len(p.waves)
    assert not set(p.skipped) & {w.site for w in p.waves}
    assert all(w.to_release == NEW and w.from_releases == (OLD,) for w in p.waves)


def test_wave_fields_traffic_steps_bakes_and_fleet_bake_gate() -> None:
    pol = RolloutPolicy.model_validate({
        "gate": {"live_steps": {"weights": [5, 50, 100], "bake_s": 7}},
        "rollout": {"bake_s": 60, "canary_bake_s": 600, "bake_overrides": {"lyon": 120, "lille": 90},
                    "reserve": {"fleet_bake_s": 3600}},
    })
    p = build_plan(estate=estate(), policy=pol, target=NEW)
    assert [(s.weight, s.bake_s) for s in p.waves[0].traffic_steps] == [(5, 7.0), (50, 7.0), (100, 7.0)]
    assert all(w.traffic_steps == p.waves[0].traffic_steps for w in p.waves)
    assert {w.site: w.bake_s for w in p.waves} == {"paris": 600, "lyon": 120, "marseille": 60, "rennes": 60,
                                                   "bordeaux": 60, "lille": 90}
    assert [w.not_before_fleet_bake_s for w in p.waves] == [0, 0, 0, 0, 0, 3600]
    assert (p.target, p.policy, p.estate) == (NEW, "default", "test")


@pytest.mark.parametrize(("rollout", "canary_bake"), [
    ({}, 10.0),                                                        # no canary bake: like any wave
    ({"canary_bake_s": 300}, 300.0),
    ({"canary_bake_s": 300, "bake_overrides": {"paris": 900}}, 900.0),  # combining keys never shortens a bake
    ({"canary_bake_s": 300, "bake_overrides": {"paris": 5}}, 300.0),
    ({"bake_overrides": {"paris": 45}}, 45.0),
])
def test_canary_bake(rollout: dict[str, Any], canary_bake: float) -> None:
    assert plan(rollout).waves[0].bake_s == canary_bake


def test_approvals_mark_their_waves() -> None:
    p = plan({"approvals": [2, 6]})
    assert [w.index for w in p.waves if w.approval_required] == [2, 6]


def test_mixed_release_estate_keeps_each_sites_from_release() -> None:
    p = plan(releases={"lyon": "5.5.9"})
    assert {w.site: w.from_releases for w in p.waves}["lyon"] == ("5.5.9",)


# --- digests ----------------------------------------------------------------------------

def test_digest_is_stable_and_matches_the_canonical_json() -> None:
    a, b = plan(), plan()
    assert a.digest == b.digest
    assert len(a.digest) == 64 and int(a.digest, 16) >= 0
    # a whole-estate plan's digest leaves out `limit` (null) and `unlimited` (empty), and one
    # without a standing reserve `standing` (empty): the digests of plans written before them
    assert a.digest == plan_digest(a.model_dump(mode="json", exclude={"digest", "limit", "unlimited", "standing"}))
    assert a.digest == plan_digest(digest_body(a))
    # key order does not matter: canonical JSON sorts keys
    body = digest_body(a)
    assert plan_digest(dict(reversed(list(body.items())))) == a.digest


def test_digest_survives_a_json_round_trip_like_the_journal() -> None:
    a = plan({"approvals": [3]})
    assert Plan.model_validate_json(a.model_dump_json()) == a


DIGEST_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("target", {"target": "5.7.1"}),
    ("order", {"rollout": {"order": ["lyon", "paris", "marseille", "rennes", "bordeaux", "lille"]}}),
    ("canary", {"rollout": {"canary": "rennes"}}),
    ("bake", {"rollout": {"bake_s": 11}}),
    ("override", {"rollout": {"bake_overrides": {"rennes": 12}}}),
    ("canary bake", {"rollout": {"canary_bake_s": 13}}),
    ("approval", {"rollout": {"approvals": [2]}}),
    ("reserve size", {"rollout": {"reserve": {"sites": 2}}}),
    ("fleet bake", {"rollout": {"reserve": {"fleet_bake_s": 31}}}),
    ("observed release", {"releases": {"lyon": "5.5.9"}}),
    ("skipped site", {"releases": {"lyon": NEW}}),
]


@pytest.mark.parametrize("change", [c[1] for c in DIGEST_CHANGES], ids=[c[0] for c in DIGEST_CHANGES])
def test_digest_changes_with_any_change(change: dict[str, Any]) -> None:
    base = plan()
    changed = plan(change.get("rollout"), change.get("releases"), target=change.get("target", NEW))
    assert changed.digest != base.digest


def test_digest_changes_with_gate_steps_policy_name_and_estate_name() -> None:
    base = plan()
    steps = RolloutPolicy.model_validate({"name": "p", "gate": {"live_steps": {"weights": [2, 100]}}})
    assert build_plan(estate=estate(), policy=steps, target=NEW).digest != base.digest
    assert build_plan(estate=estate(), policy=RolloutPolicy(name="q"), target=NEW).digest != base.digest
    renamed = estate().model_copy(update={"name": "other"})
    assert build_plan(estate=renamed, policy=policy(), target=NEW).digest != base.digest


@pytest.mark.parametrize("tamper", [
    lambda d: d["waves"][1].update(bake_s=0),
    lambda d: d.update(target="9.9.9"),
    lambda d: d["waves"].pop(),
    lambda d: d["waves"][0].update(role="wave"),
    lambda d: d.update(digest="0" * 64),
])
def test_a_tampered_plan_is_refused_when_read_back(tamper: Any) -> None:
    data = plan().model_dump(mode="json")
    tamper(data)
    with pytest.raises(ValidationError):
        Plan.model_validate(data)


# --- refusals ---------------------------------------------------------------------------

REFUSALS: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    ("two sites per wave", "one-site-at-a-time", {"sites_per_wave": 2}, {}, "sites_per_wave is 2"),
    ("zero sites per wave", "one-site-at-a-time", {"sites_per_wave": 0}, {}, "sites_per_wave is 0"),
    ("skip canary", "canary-first", {"skip_canary": True}, {}, "skip_canary"),
    ("canary not a site", "canary-first", {"canary": "nice"}, {}, "'nice' is not a site"),
    ("canary already on target", "canary-first", {"canary": "lyon"}, {"lyon": NEW}, "canary lyon already runs"),
    ("default canary already on target", "canary-first", {}, {"paris": NEW}, "canary paris already runs"),
    ("reserve zero with several to change", "known-good-reserve", {"reserve": {"sites": 0}}, {},
     "whole estate would run"),
    ("reserve negative", "known-good-reserve", {"reserve": {"sites": -1}}, {}, "0 or more"),
    ("reserve as large as the change", "known-good-reserve", {"reserve": {"sites": 6}}, {}, "at least one must"),
    ("reserve larger than what is left", "known-good-reserve", {"reserve": {"sites": 2}},
     {s: NEW for s in SITES[2:]}, "at least one must"),
    ("last site alone keeps the reserve rule", "known-good-reserve", {"canary": "lille"},
     {s: NEW for s in SITES[:-1]}, "reserve.sites: 0"),
    ("reserve that does not wait", "known-good-reserve", {"reserve": {"fleet_bake_s": 0}}, {}, "protects nothing"),
    ("reserve names an unknown site", "known-good-reserve", {"reserve": {"site_names": ["nice"]}}, {}, "'nice'"),
    ("reserve site already on target", "known-good-reserve", {"reserve": {"site_names": ["lille"]}},
     {"lille": NEW}, "reserve site lille already runs"),
    ("canary in the reserve", "known-good-reserve", {"canary": "lille", "reserve": {"site_names": ["lille"]}}, {},
     "both the canary and in the reserve"),
    ("order with an unknown site", "order-covers-every-site", {"order": [*SITES, "nice"]}, {}, "'nice'"),
    ("order missing a site", "order-covers-every-site", {"order": list(SITES[:-1])}, {}, "leaves out lille"),
    ("order with a duplicate", "order-covers-every-site", {"order": [*SITES, "lyon"]}, {}, "'lyon' twice"),
    ("approval of a wave that does not exist", "approval-wave-exists", {"approvals": [7]}, {}, "waves 1 to 6"),
    ("approval of wave 0", "approval-wave-exists", {"approvals": [0]}, {}, "count from 1"),
    ("approval beyond the waves left", "approval-wave-exists", {"approvals": [5]}, {"lyon": NEW, "rennes": NEW},
     "waves 1 to 4"),
    ("mixed site", "site-inconsistent", {}, {"lyon": (OLD, NEW)}, "lyon-cs1=5.6.0, lyon-cs2=5.7.0"),
    ("mixed site even when the rest is done", "site-inconsistent", {}, {"lyon": (OLD, NEW)}, "several releases"),
    ("override of an unknown site", "sites-exist", {"bake_overrides": {"nice": 5}}, {}, "'nice'"),
]


@pytest.mark.parametrize(("rule", "rollout", "releases", "detail"), [c[1:] for c in REFUSALS],
                         ids=[c[0] for c in REFUSALS])
def test_each_rule_is_refused_with_its_id(rule: str, rollout: dict[str, Any], releases: dict[str, Any],
                                          detail: str) -> None:
    with pytest.raises(PlanRefused) as info:
        plan(rollout, releases)
    assert info.value.rule == rule
    assert rule in RULES
    assert info.value.message.startswith(f"refused by rule {rule}: ")
    assert detail in f"{info.value.message} {info.value.hint or ''}"
    assert isinstance(info.value, InvalidInput) and info.value.exit_code == 2


@pytest.mark.parametrize("target", ["", "a b", "-1", "x" * 65, "../etc"])
def test_a_target_that_is_not_a_release_is_refused(target: str) -> None:
    with pytest.raises(PlanRefused) as info:
        plan(target=target)
    assert info.value.rule == "target-release"


def test_every_rule_has_a_refusal_case() -> None:
    from tests.unit.rollout.test_plan_limit import LIMIT_REFUSALS

    tested = {c[1] for c in REFUSALS} | {c[1] for c in LIMIT_REFUSALS} | {"target-release"}
    assert tested == set(RULES)


def test_nothing_to_do_is_not_an_error_even_with_approvals() -> None:
    p = plan({"approvals": [3]}, {s: NEW for s in SITES})
    assert p.waves == () and p.reserve == ()


def test_a_single_site_estate_needs_reserve_zero() -> None:
    with pytest.raises(PlanRefused, match="known-good-reserve"):
        plan(sites=("solo",))
    assert shape(plan({"reserve": {"sites": 0}}, sites=("solo",))) == [("solo", "canary")]


# --- freeze windows ---------------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")


def frozen(*windows: dict[str, Any]) -> RolloutPolicy:
    return policy(freeze_windows=list(windows))


CHRISTMAS = {"timezone": "Europe/Paris", "start": "2026-12-19 00:00", "end": "2027-01-04 00:00", "reason": "xmas"}
SAT_EVENING = {"timezone": "Europe/Paris", "days": ["sat"], "start_time": "18:00", "end_time": "24:00"}
OVERNIGHT = {"timezone": "Europe/Paris", "days": ["sat"], "start_time": "22:00", "end_time": "04:00"}
NY_NIGHT = {"timezone": "America/New_York", "days": ["fri"], "start_time": "20:00", "end_time": "23:00"}

FREEZE_CASES: list[tuple[str, dict[str, Any], datetime, bool]] = [
    # one-off, local midnight in Paris is 23:00 UTC the day before (winter)
    ("one-off: just before start", CHRISTMAS, datetime(2026, 12, 18, 22, 59, tzinfo=UTC), False),
    ("one-off: at start", CHRISTMAS, datetime(2026, 12, 18, 23, 0, tzinfo=UTC), True),
    ("one-off: inside, given in Tokyo", CHRISTMAS, datetime(2027, 1, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo")), True),
    ("one-off: end excluded", CHRISTMAS, datetime(2027, 1, 3, 23, 0, tzinfo=UTC), False),
    ("one-off: just before end", CHRISTMAS, datetime(2027, 1, 3, 22, 59, tzinfo=UTC), True),
    # weekly, summer (CEST, UTC+2): Saturday 18:00 Paris is 16:00 UTC
    ("weekly summer: before", SAT_EVENING, datetime(2026, 7, 4, 15, 59, tzinfo=UTC), False),
    ("weekly summer: start", SAT_EVENING, datetime(2026, 7, 4, 16, 0, tzinfo=UTC), True),
    ("weekly summer: 23:59 local", SAT_EVENING, datetime(2026, 7, 4, 21, 59, tzinfo=UTC), True),
    ("weekly summer: midnight local ends it", SAT_EVENING, datetime(2026, 7, 4, 22, 0, tzinfo=UTC), False),
    ("weekly: another day", SAT_EVENING, datetime(2026, 7, 3, 17, 0, tzinfo=UTC), False),
    # weekly, winter (CET, UTC+1): Saturday 18:00 Paris is 17:00 UTC
    ("weekly winter: 16:30 UTC is before", SAT_EVENING, datetime(2026, 1, 10, 16, 30, tzinfo=UTC), False),
    ("weekly winter: 17:00 UTC is the start", SAT_EVENING, datetime(2026, 1, 10, 17, 0, tzinfo=UTC), True),
    # Saturday 23:30 UTC is already Sunday 00:30 in Paris: outside; a naive UTC check would say inside
    ("weekly: Saturday in UTC, Sunday in Paris", SAT_EVENING, datetime(2026, 1, 10, 23, 30, tzinfo=UTC), False),
    # overnight window: Sunday 03:00 Paris belongs to Saturday's occurrence
    ("overnight: Sunday morning part", OVERNIGHT, datetime(2026, 1, 11, 3, 0, tzinfo=PARIS), True),
    ("overnight: end excluded", OVERNIGHT, datetime(2026, 1, 11, 4, 0, tzinfo=PARIS), False),
    ("overnight: Saturday early morning is not in it", OVERNIGHT, datetime(2026, 1, 10, 3, 0, tzinfo=PARIS), False),
    # DST forward, Paris 2026-03-29 02:00 -> 03:00: Saturday 22:00 CET (21:00 UTC) to Sunday 04:00 CEST (02:00 UTC)
    ("overnight across spring DST: 01:30 UTC", OVERNIGHT, datetime(2026, 3, 29, 1, 30, tzinfo=UTC), True),
    ("overnight across spring DST: 02:00 UTC ends", OVERNIGHT, datetime(2026, 3, 29, 2, 0, tzinfo=UTC), False),
    # DST back, Paris 2026-10-25 03:00 -> 02:00: Saturday 22:00 CEST (20:00 UTC) to Sunday 04:00 CET (03:00 UTC)
    ("overnight across autumn DST: start 20:00 UTC", OVERNIGHT, datetime(2026, 10, 24, 20, 0, tzinfo=UTC), True),
    ("overnight across autumn DST: 02:30 UTC", OVERNIGHT, datetime(2026, 10, 25, 2, 30, tzinfo=UTC), True),
    ("overnight across autumn DST: 03:00 UTC ends", OVERNIGHT, datetime(2026, 10, 25, 3, 0, tzinfo=UTC), False),
    # New York: Friday 20:00 EDT is Saturday 00:00 UTC; in winter (EST) Saturday 01:00 UTC
    ("New York summer", NY_NIGHT, datetime(2026, 7, 11, 0, 30, tzinfo=UTC), True),
    ("New York winter: 00:30 UTC is 19:30 EST", NY_NIGHT, datetime(2026, 1, 10, 0, 30, tzinfo=UTC), False),
    ("New York winter: 01:30 UTC", NY_NIGHT, datetime(2026, 1, 10, 1, 30, tzinfo=UTC), True),
    ("whole weekend default times", {"timezone": "UTC", "days": ["sat", "sun"]},
     datetime(2026, 1, 11, 23, 59, tzinfo=UTC), True),
    ("whole weekend: Monday", {"timezone": "UTC", "days": ["sat", "sun"]}, datetime(2026, 1, 12, 0, 0, tzinfo=UTC),
     False),
]


@pytest.mark.parametrize(("window", "now", "active"), [c[1:] for c in FREEZE_CASES], ids=[c[0] for c in FREEZE_CASES])
def test_active_freeze(window: dict[str, Any], now: datetime, active: bool) -> None:
    pol = frozen(window)
    assert (active_freeze(pol, now) is not None) is active


def test_active_freeze_returns_the_first_window_in_force() -> None:
    pol = frozen(SAT_EVENING, {**CHRISTMAS, "start": "2026-12-01 00:00"})
    saturday_evening_in_december = datetime(2026, 12, 5, 19, 0, tzinfo=PARIS)
    window = active_freeze(pol, saturday_evening_in_december)
    assert window is not None and window.days == ("sat",)
    assert active_freeze(pol, datetime(2026, 12, 2, 12, 0, tzinfo=PARIS)) == pol.rollout.freeze_windows[1]
    assert active_freeze(policy(), datetime(2026, 12, 5, 19, 0, tzinfo=PARIS)) is None


def test_freeze_occurrence_gives_the_utc_bounds() -> None:
    window = FreezeWindow.model_validate(OVERNIGHT)
    start, end = freeze_occurrence(window, datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) or (None, None)
    assert (start, end) == (datetime(2026, 3, 28, 21, 0, tzinfo=UTC), datetime(2026, 3, 29, 2, 0, tzinfo=UTC))


def test_a_window_inside_the_skipped_hour_is_empty_that_day() -> None:
    window = FreezeWindow.model_validate({"timezone": "Europe/Paris", "days": ["sun"], "start_time": "02:00",
                                          "end_time": "03:00"})
    assert freeze_occurrence(window, datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) is None
    assert freeze_occurrence(window, datetime(2026, 4, 5, 0, 30, tzinfo=UTC)) is not None  # 02:30 CEST


def test_active_freeze_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        active_freeze(frozen(SAT_EVENING), datetime(2026, 1, 10, 18, 0))


# --- the standing reserve (issue #14, item 4) ----------------------------------------------

STANDING = {"reserve": {"sites": 1, "standing_days": 14}}


def _standing_plan(releases: dict[str, Any] | None = None, *, live_days: float = 0.0,
                   rollout: dict[str, Any] | None = None, limit: tuple[str, ...] | None = None) -> Plan:
    return build_plan(estate=estate(releases), policy=policy(**(rollout or STANDING)), target=NEW, limit=limit,
                      target_live_s=live_days * DAY_S)


def test_a_young_release_leaves_the_standing_reserve_out_of_the_plan() -> None:
    p = _standing_plan(live_days=0)
    assert p.standing == ("lille",) and p.reserve == ()
    assert shape(p) == [("paris", "canary"), ("lyon", "wave"), ("marseille", "wave"), ("rennes", "wave"),
                        ("bordeaux", "wave")]  # five of six: at most N-1 sites on a release younger than D days
    assert p.digest == plan_digest(digest_body(p)) and "standing" in digest_body(p)


def test_while_the_release_is_young_nothing_more_changes() -> None:
    after_first = {s: NEW for s in SITES[:5]}
    p = _standing_plan(after_first, live_days=13.9)
    assert p.waves == () and p.standing == ("lille",)


def test_once_live_for_standing_days_the_reserve_changes_its_first_wave_the_canary() -> None:
    p = _standing_plan({s: NEW for s in SITES[:5]}, live_days=14)
    assert shape(p) == [("lille", "canary")] and p.standing == () and p.reserve == ()
    # without standing_days nothing proves the release: the last site alone is refused
    with pytest.raises(PlanRefused, match="canary-first"):
        plan(releases={s: NEW for s in SITES[:5]})


def test_an_old_release_with_many_sites_left_keeps_the_fleet_bake_reserve() -> None:
    p = _standing_plan(live_days=30)
    assert p.standing == () and p.reserve == ("lille",) and p.waves[-1].not_before_fleet_bake_s > 0


def test_the_standing_reserve_is_never_the_canary_and_follows_site_names() -> None:
    p = _standing_plan(live_days=1, rollout={"canary": "lille", "reserve": {"sites": 1, "standing_days": 7}})
    assert p.standing == ("bordeaux",) and p.waves[0].site == "lille"
    p = _standing_plan(live_days=1, rollout={"reserve": {"sites": 2, "standing_days": 7,
                                                         "site_names": ["lyon", "rennes"]}})
    assert p.standing == ("lyon", "rennes") and {"lyon", "rennes"}.isdisjoint(w.site for w in p.waves)


def test_sites_outside_a_limit_count_towards_the_standing_reserve() -> None:
    p = _standing_plan(live_days=0, limit=SITES[:3])
    assert p.standing == () and p.unlimited == SITES[3:] and len(p.waves) == 3


def test_standing_days_need_a_reserve() -> None:
    with pytest.raises(ValueError, match="standing_days needs a reserve"):
        policy(reserve={"sites": 0, "standing_days": 3})
