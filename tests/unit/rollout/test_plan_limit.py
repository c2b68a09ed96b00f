"""Plans narrowed by `--limit`: only the limited sites change, the rest are recorded as left
alone, the canary and reserve rules still hold, and the limit is part of the digest."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.estate.limit import parse_limit
from orchestrator.rollout.plan import Plan, PlanRefused
from tests.unit.rollout.test_plan import NEW, SITES, estate, plan, shape

LIMIT_REFUSALS: list[tuple[str, str, dict[str, Any], dict[str, Any], tuple[str, ...], str]] = [
    ("limit names an unknown site", "limit-sites-exist", {}, {}, ("lyon", "nice"), "'nice'"),
    ("limit names no site", "limit-sites-exist", {}, {}, (), "no site"),
    ("policy canary outside the limit, not yet upgraded", "canary-first", {"canary": "paris"}, {},
     ("lyon", "marseille"), "outside --limit"),
    ("limit only the last site", "known-good-reserve", {}, {s: NEW for s in SITES[:-1]}, ("lille",),
     "reserve.sites: 0"),
    ("limit as large as the reserve it must hold", "known-good-reserve", {"reserve": {"sites": 3}},
     {s: NEW for s in SITES[:3]}, ("rennes", "bordeaux"), "(1 more kept outside --limit)"),
]


@pytest.mark.parametrize(("rule", "rollout", "releases", "limit", "detail"), [c[1:] for c in LIMIT_REFUSALS],
                         ids=[c[0] for c in LIMIT_REFUSALS])
def test_each_limit_refusal_names_its_rule(rule: str, rollout: dict[str, Any], releases: dict[str, Any],
                                           limit: tuple[str, ...], detail: str) -> None:
    with pytest.raises(PlanRefused) as info:
        plan(rollout, releases, limit=limit)
    assert info.value.rule == rule
    assert detail in f"{info.value.message} {info.value.hint or ''}"
    assert info.value.exit_code == 2


def test_only_the_limited_sites_change_and_the_rest_hold_the_reserve() -> None:
    p = plan(limit=("marseille", "lyon"))
    assert shape(p) == [("lyon", "canary"), ("marseille", "wave")]
    assert p.limit == ("lyon", "marseille")  # in rollout order
    assert p.unlimited == ("paris", "rennes", "bordeaux", "lille")
    assert p.reserve == () and p.skipped == ()


def test_a_limit_of_every_site_plans_the_same_waves_under_another_digest() -> None:
    whole, limited = plan(), plan(limit=SITES)
    assert shape(limited) == shape(whole) and limited.unlimited == ()
    assert limited.digest != whole.digest


def test_the_limit_is_in_the_digest() -> None:
    assert plan(limit=("lyon", "marseille")).digest != plan(limit=("lyon", "rennes")).digest


def test_the_reserve_comes_from_the_limit_when_none_is_left_outside() -> None:
    done = {s: NEW for s in SITES[:3]}
    p = plan(releases=done, limit=("rennes", "bordeaux", "lille"))
    assert shape(p) == [("rennes", "canary"), ("bordeaux", "wave"), ("lille", "reserve")]
    assert p.unlimited == ("paris", "lyon", "marseille")


def test_sites_kept_outside_count_towards_k() -> None:
    p = plan({"reserve": {"sites": 2}}, limit=SITES[:-1])
    assert p.reserve == ("bordeaux",) and p.unlimited == ("lille",)


def test_policy_canary_inside_the_limit_goes_first() -> None:
    p = plan({"canary": "rennes"}, limit=("lyon", "rennes", "lille"))
    assert shape(p)[0] == ("rennes", "canary")


def test_policy_canary_already_upgraded_outside_the_limit_lets_the_first_limited_site_be_canary() -> None:
    p = plan({"canary": "paris"}, {"paris": NEW}, limit=("lyon", "marseille"))
    assert shape(p) == [("lyon", "canary"), ("marseille", "wave")]


def test_explicit_reserve_outside_the_limit_is_held_not_planned() -> None:
    p = plan({"reserve": {"sites": 1, "site_names": ["lille"]}}, limit=("paris", "lyon"))
    assert p.reserve == () and "lille" in p.unlimited


def test_a_limited_plan_round_trips_and_a_tampered_limit_is_refused() -> None:
    p = plan(limit=("lyon", "marseille"))
    data = p.model_dump(mode="json")
    assert Plan.model_validate(data) == p
    with pytest.raises(ValidationError):
        Plan.model_validate({**data, "limit": ["lyon", "marseille", "rennes"]})
    with pytest.raises(ValidationError):
        Plan.model_validate({**data, "unlimited": ["paris", "lyon"]})


def test_a_plan_journalled_before_limits_existed_still_validates() -> None:
    p = plan()
    data = p.model_dump(mode="json")
    assert data["limit"] is None and data["unlimited"] == []
    del data["limit"], data["unlimited"]
    assert Plan.model_validate(data) == p


def test_parse_limit_accepts_commas_and_repeats_in_estate_order() -> None:
    e = estate()
    assert parse_limit(e, None) is None and parse_limit(e, []) is None
    assert parse_limit(e, ["lille, lyon", "paris", "lyon"]) == ("paris", "lyon", "lille")


@pytest.mark.parametrize(("value", "detail"), [("lyon,nice", "no site 'nice' in estate test (sites: paris, lyon"),
                                               ("lyon,,paris", "empty site name"), ("", "empty site name")])
def test_parse_limit_refuses_what_the_estate_does_not_have(value: str, detail: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_limit(estate(), [value])
    assert detail in info.value.message and info.value.exit_code == 2
