"""Policy files: malformed YAML, unknown keys at every level, wrong types and bad time zones are
refused by load_policy with InvalidInput naming the file and the dotted key; fuzzing shows that
nothing else ever escapes and that valid policies round-trip; the shipped policies plan."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from orchestrator.cli import plan_cmd
from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import load_inventory
from orchestrator.policy.load import DEFAULT_POLICY, load_policy, policy_from_data
from orchestrator.policy.model import (
    CanaryPolicy,
    DrillPolicy,
    GatePolicy,
    LiveStepsPolicy,
    SoakPolicy,
    SyntheticPolicy,
)
from orchestrator.policy.rollout import FreezeWindow, ReserveSection, RolloutPolicy, RolloutSection
from orchestrator.policy.watch import E425Policy, E425Threshold, WatchPolicy
from orchestrator.rollout.plan import active_freeze, build_plan
from tests.conftest import REPO

PRODUCTION = REPO / "policies" / "production.example.yml"
INVENTORY = REPO / "inventory" / "production.example.yml"
ESTATE = load_inventory(INVENTORY)
# CALLFLEET_FUZZ_SCALE=50 runs fifty times more examples (a nightly job, or after touching the loader).
SCALE = float(os.environ.get("CALLFLEET_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=int(100 * SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SLOW = settings(FUZZ, max_examples=int(60 * SCALE))  # each example dumps and loads a whole policy twice
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: the tests stay fast


def dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=DUMPER)

# A document using every section, so that every level can be probed.
FULL: dict[str, Any] = {
    "name": "full",
    "gate": {"synthetic": {"calls_per_number": 100, "min_calls_per_number": 50},
             "canary": {"alpha": 0.05}, "drill": {"commands": ["true"]}, "soak": {"duration_s": 5},
             "live_steps": {"weights": [10, 100]}},
    "rollout": {
        "order": ["paris", "lyon"], "canary": "lyon", "bake_s": 5, "bake_overrides": {"paris": 6},
        "canary_bake_s": 7, "approvals": [2],
        "freeze_windows": [
            {"timezone": "Europe/Paris", "start": "2026-12-19 00:00", "end": "2027-01-04 00:00"},
            {"timezone": "UTC", "days": ["sat"], "start_time": "18:00", "end_time": "24:00", "reason": "peak"},
        ],
        "reserve": {"sites": 1, "fleet_bake_s": 60, "site_names": ["paris"]},
        "drain_timeout_s": 10,
    },
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("policies")


def write(workdir: Path, text: str | bytes, name: str = "p.yml") -> Path:
    path = workdir / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(InvalidInput) as info:
        load_policy(path)
    assert "\n" not in info.value.message, "errors are one line"
    return info.value.message


def mappings(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every mapping in `doc` (lists descended by index)."""
    if isinstance(doc, dict):
        yield prefix
        for key, value in doc.items():
            yield from mappings(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from mappings(value, (*prefix, i))


def leaves(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in `doc`, containers included."""
    if prefix:
        yield prefix
    children = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in children:
        yield from leaves(value, (*prefix, key))


def at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


MODELS: tuple[type[BaseModel], ...] = (RolloutPolicy, GatePolicy, SyntheticPolicy, CanaryPolicy, DrillPolicy,
                                      SoakPolicy, LiveStepsPolicy, RolloutSection, ReserveSection, FreezeWindow,
                                      WatchPolicy, E425Policy, E425Threshold)
FIELDS = {name for model in MODELS for name in model.model_fields}


# --- the shipped policies ---------------------------------------------------------------

def test_full_document_is_valid() -> None:
    pol = policy_from_data(copy.deepcopy(FULL), Path("full.yml"))
    assert pol.rollout.freeze_windows[1].days == ("sat",)


def test_default_policy_plans_the_lab_canary_first_with_a_reserve() -> None:
    from orchestrator.lab.topology import LabParams, lab_estate

    pol = load_policy(None)
    estate = lab_estate(LabParams(sites=6, hosts_per_site=2, base="198.18.78"), Path("/nonexistent"))
    plan = build_plan(estate=estate, policy=pol, target="good")
    assert [w.role for w in plan.waves] == ["canary", "wave", "wave", "wave", "wave", "reserve"]
    assert plan.waves[-1].not_before_fleet_bake_s == pol.rollout.reserve.fleet_bake_s > 0
    assert all(w.bake_s <= 60 for w in plan.waves), "lab bakes are seconds"


def test_production_example_plans_the_production_estate() -> None:
    pol = load_policy(PRODUCTION)
    plan = build_plan(estate=load_inventory(INVENTORY), policy=pol, target="5.7.0")
    assert (plan.waves[0].site, plan.waves[0].role) == ("lille", "canary")
    assert plan.reserve == ("paris",) and plan.waves[-1].not_before_fleet_bake_s >= 24 * 3600
    assert [w.index for w in plan.waves if w.approval_required] == [2]
    assert plan.waves[0].bake_s >= 24 * 3600 and all(w.bake_s >= 3600 for w in plan.waves)
    paris = ZoneInfo("Europe/Paris")
    christmas = active_freeze(pol, datetime(2026, 12, 25, 12, 0, tzinfo=paris))
    assert christmas is not None and "Christmas" in christmas.reason
    saturday = active_freeze(pol, datetime(2026, 11, 21, 20, 0, tzinfo=paris))
    assert saturday is not None and saturday.days == ("sat",)
    assert active_freeze(pol, datetime(2026, 11, 23, 10, 0, tzinfo=paris)) is None


# --- refusals, table-driven -------------------------------------------------------------

MALFORMED: list[tuple[str, str | bytes, str]] = [
    ("unclosed flow", "rollout: {order: [paris\n", "line 2: not valid YAML"),
    ("bad indentation", "rollout:\n  bake_s: 1\n bake_s: 2\n", "line 3: not valid YAML"),
    ("tab indentation", "rollout:\n\tbake_s: 1\n", "not valid YAML"),
    ("duplicate key", "rollout:\n  approvals: [2]\n  approvals: []\n",
     "line 3: not valid YAML (duplicate key 'approvals'"),
    ("duplicate nested key", "gate:\n  soak: {rate: 1, rate: 2}\n", "duplicate key 'rate'"),
    ("impossible date", "rollout:\n  freeze_windows: [{timezone: UTC, start: 2026-13-45 10:00:00}]\n",
     "(top): not valid YAML (month must be in 1..12)"),
    ("python object tag", "rollout: !!python/object/apply:os.system [ls]\n", "not valid YAML"),
    ("control character", "name: a\x00b\n", "character 7: not valid YAML"),
    ("deep nesting", "[" * 1200, "not valid YAML"),
    ("not a mapping", "- a\n- b\n", "(top): expected a mapping, got list"),
    ("a scalar", "just words\n", "(top): expected a mapping, got str"),
    ("not UTF-8", b"name: \xff\xfe\n", "not UTF-8 text"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_yaml_is_refused_naming_the_file(workdir: Path, text: str | bytes, expected: str) -> None:
    path = write(workdir, text)
    message = refusal(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_or_unreadable_file(workdir: Path) -> None:
    assert refusal(workdir / "absent.yml").endswith("no such policy file")
    assert "cannot read" in refusal(workdir)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_policy_file_is_refused_not_taken_as_the_defaults(workdir: Path, text: str) -> None:
    """An empty file (or /dev/null) is a mistake: the defaults are what omitting --policy gives."""
    assert refusal(write(workdir, text)).endswith("(top): the policy file is empty")
    with pytest.raises(InvalidInput, match="not a regular file"):  # /dev/null: refused, not empty-as-default
        load_policy(Path("/dev/null"))


# Inside bake_overrides every key is a site name: checked against the estate by the plan (rule sites-exist).
MODEL_LEVELS = [p for p in mappings(FULL) if not (p and p[-1] == "bake_overrides")]


@pytest.mark.parametrize("where", MODEL_LEVELS, ids=lambda p: dotted(p) or "(top)")
def test_unknown_keys_are_refused_at_every_level(workdir: Path, where: tuple[Any, ...]) -> None:
    doc = copy.deepcopy(FULL)
    at(doc, where)["colour"] = "red"
    path = write(workdir, dump(doc))
    assert refusal(path) == f"{path}: {dotted((*where, 'colour'))}: unknown key (typo?)"


WRONG: list[tuple[str, dict[str, Any], str, str]] = [
    ("name not a string", {"name": 3}, "name", "valid string"),
    ("gate not a mapping", {"gate": [1]}, "gate", "valid dictionary"),
    ("weights not rising", {"gate": {"live_steps": {"weights": [50, 10, 100]}}}, "gate.live_steps", "rise"),
    ("order not a list", {"rollout": {"order": "paris"}}, "rollout.order", "valid tuple"),
    ("canary a list", {"rollout": {"canary": ["a"]}}, "rollout.canary", "valid string"),
    ("sites_per_wave a word", {"rollout": {"sites_per_wave": "two"}}, "rollout.sites_per_wave", "valid integer"),
    ("negative bake", {"rollout": {"bake_s": -1}}, "rollout.bake_s", "greater than or equal to 0"),
    ("infinite bake", {"rollout": {"bake_s": float("inf")}}, "rollout.bake_s", "finite"),
    ("bake in milliseconds", {"rollout": {"bake_s": 86_400_000}}, "rollout.bake_s", "less than or equal"),
    ("override not a number", {"rollout": {"bake_overrides": {"paris": "long"}}}, "rollout.bake_overrides.paris",
     "valid number"),
    ("override keyed by a number", {"rollout": {"bake_overrides": {1: 5}}}, "rollout.bake_overrides.1.[key]",
     "valid string"),
    ("approvals a number", {"rollout": {"approvals": 2}}, "rollout.approvals", "valid tuple"),
    ("approval fractional", {"rollout": {"approvals": [1.5]}}, "rollout.approvals.0", "fractional"),
    ("skip_canary a word", {"rollout": {"skip_canary": "maybe"}}, "rollout.skip_canary", "valid boolean"),
    ("reserve a number", {"rollout": {"reserve": 1}}, "rollout.reserve", "valid dictionary"),
    ("reserve names disagree", {"rollout": {"reserve": {"sites": 1, "site_names": ["a", "b"]}}},
     "rollout.reserve", "site_names lists 2 site(s) but sites is 1"),
    ("reserve names twice", {"rollout": {"reserve": {"sites": 2, "site_names": ["a", "a"]}}},
     "rollout.reserve", "twice"),
    ("drain timeout zero", {"rollout": {"drain_timeout_s": 0}}, "rollout.drain_timeout_s", "greater than 0"),
    ("windows not a list", {"rollout": {"freeze_windows": {"timezone": "UTC"}}}, "rollout.freeze_windows",
     "valid tuple"),
]


def window(**fields: Any) -> dict[str, Any]:
    return {"rollout": {"freeze_windows": [fields]}}


W0 = "rollout.freeze_windows.0"
WRONG += [
    ("unknown zone", window(timezone="Europe/Pari", days=["sat"]), f"{W0}.timezone",
     "unknown time zone 'Europe/Pari'"),
    ("zone a region", window(timezone="Europe", days=["sat"]), f"{W0}.timezone", "unknown time zone"),
    ("zone a path", window(timezone="../../etc/passwd", days=["sat"]), f"{W0}.timezone", "unknown time zone"),
    ("zone missing", window(days=["sat"]), f"{W0}.timezone", "Field required"),
    ("no shape", window(timezone="UTC"), W0, "either `start` and `end`"),
    ("both shapes", window(timezone="UTC", days=["sat"], start="2026-01-01 00:00", end="2026-01-02 00:00"),
     W0, "not both"),
    ("end before start", window(timezone="UTC", start="2026-01-02 00:00", end="2026-01-01 00:00"), W0, "after start"),
    ("one-off without end", window(timezone="UTC", start="2026-01-02 00:00"), W0, "either `start` and `end`"),
    ("offset given", window(timezone="UTC", start="2026-01-01T00:00+01:00", end="2026-01-02 00:00"),
     f"{W0}.start", "without offset"),
    ("a number for a date", window(timezone="UTC", start=1700000000, end="2026-01-02 00:00"), f"{W0}.start",
     "local date and time"),
    ("not a date", window(timezone="UTC", start="Christmas", end="2026-01-02 00:00"), f"{W0}.start",
     "valid datetime"),
    ("out of range", window(timezone="America/New_York", start="2026-01-01 00:00", end="9999-12-31 23:59"), W0,
     "out of the range"),
    ("bad day", window(timezone="UTC", days=["saturday"]), f"{W0}.days.0", "'mon', 'tue'"),
    ("weekly without days", window(timezone="UTC", start_time="18:00"), W0, "needs `days`"),
    ("unquoted time", window(timezone="UTC", days=["sat"], start_time=1080), f"{W0}.start_time", "quoted time"),
    ("bad time", window(timezone="UTC", days=["sat"], start_time="25:00"), f"{W0}.start_time", "HH:MM"),
    ("start at 24:00", window(timezone="UTC", days=["sat"], start_time="24:00"), f"{W0}.start_time", "23:59"),
    ("empty window", window(timezone="UTC", days=["sat"], start_time="10:00", end_time="10:00"), W0,
     "00:00 to 24:00"),
]


@pytest.mark.parametrize(("doc", "key", "expected"), [c[1:] for c in WRONG], ids=[c[0] for c in WRONG])
def test_wrong_values_are_refused_naming_the_dotted_key(workdir: Path, doc: dict[str, Any], key: str,
                                                       expected: str) -> None:
    path = write(workdir, dump(doc))
    message = refusal(path)
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message


def test_a_date_alone_means_its_local_midnight(workdir: Path) -> None:
    text = "rollout:\n  freeze_windows:\n    - {timezone: Europe/Paris, start: 2026-12-24, end: 2026-12-26}\n"
    win = load_policy(write(workdir, text)).rollout.freeze_windows[0]
    assert (win.start, win.end) == (datetime(2026, 12, 24), datetime(2026, 12, 26))
    assert win.describe() == "2026-12-24 00:00 to 2026-12-26 00:00 Europe/Paris"


def test_an_unquoted_time_in_yaml_gets_a_hint(workdir: Path) -> None:
    text = "rollout:\n  freeze_windows:\n    - {timezone: UTC, days: [sat], start_time: 18:00}\n"
    message = refusal(write(workdir, text))
    assert "start_time: expected a quoted time such as '18:00' (YAML read an unquoted time as 1080)" in message


# --- property-based fuzzing -------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
           | st.sampled_from(["UTC", "Europe/Paris", "18:00", "24:00", "sat", "paris", "2026-12-24 00:00", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.sampled_from(sorted(FIELDS)), inner, max_size=4),
                      max_leaves=12)
DEFAULT_DOC: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
BASES = [DEFAULT_DOC, FULL]


def load_or_refuse(path: Path) -> RolloutPolicy | None:
    """Only InvalidInput, with a one-line message naming the file, may escape."""
    try:
        return load_policy(path)
    except InvalidInput as exc:
        assert exc.message.startswith(f"{path}: ")
        assert "\n" not in exc.message and "Traceback" not in exc.message
        return None


def assert_round_trips(workdir: Path, pol: RolloutPolicy) -> None:
    again = write(workdir, dump(pol.model_dump(mode="json")), "again.yml")
    assert load_policy(again) == pol


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzz_random_text(workdir: Path, text: str) -> None:
    load_or_refuse(write(workdir, text))


@FUZZ
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(workdir: Path, data: bytes) -> None:
    load_or_refuse(write(workdir, data))


@FUZZ
@given(doc=VALUES)
def test_fuzz_random_documents(workdir: Path, doc: Any) -> None:
    pol = load_or_refuse(write(workdir, dump(doc)))
    if pol is not None:
        assert_round_trips(workdir, pol)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A shipped or full document with one value replaced, one key removed or one key added."""
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    op = draw(st.sampled_from(["replace", "delete", "add"]))
    if op == "add":
        where = draw(st.sampled_from(list(mappings(doc))))
        key = draw(st.from_regex(r"\A[a-z_]{1,12}\Z").filter(lambda k: k not in FIELDS))
        at(doc, where)[key] = draw(VALUES)
        free = (where and where[-1] == "bake_overrides") or tuple(where[-2:]) == ("e425", "numbers")  # keyed by data
        return doc, "" if free else dotted((*where, key))
    path = draw(st.sampled_from(list(leaves(doc))))
    parent = at(doc, path[:-1])
    if op == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(VALUES)
    return doc, ""


@FUZZ_SLOW
@given(case=mutated())
def test_fuzz_mutations_of_valid_policies(workdir: Path, case: tuple[dict[str, Any], str]) -> None:
    doc, unknown = case
    path = write(workdir, dump(doc))
    pol = load_or_refuse(path)
    if unknown:
        assert pol is None
        assert refusal(path) == f"{path}: {unknown}: unknown key (typo?)"
    elif pol is not None:
        assert_round_trips(workdir, pol)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("abcz: -[]{}\n#&*!|>'\"\t0159.,?%@")), max_size=120))
def test_fuzz_yaml_punctuation(workdir: Path, text: str) -> None:
    load_or_refuse(write(workdir, "rollout:\n  " + text))


SITE_NAMES = ["paris", "lyon", "marseille", "rennes", "bordeaux", "lille"]
CLOCKS = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@st.composite
def valid_rollout(draw: st.DrawFn) -> dict[str, Any]:
    order = draw(st.permutations(SITE_NAMES))
    seconds = st.floats(min_value=0, max_value=30 * 86400, allow_nan=False)
    weekly = st.builds(lambda tz, days, s, e, r: {"timezone": tz, "days": days, "start_time": s,
                                                  "end_time": "24:00" if e == s else e, "reason": r},
                       st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]),
                       st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1,
                                max_size=3), CLOCKS, CLOCKS, st.text(max_size=20))
    one_off = st.builds(lambda tz, start, hours: {"timezone": tz, "start": start.isoformat(),
                                                  "end": datetime.fromtimestamp(start.replace(tzinfo=UTC)
                                                                                .timestamp() + hours * 3600)
                                                  .replace(tzinfo=None).isoformat()},
                        st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata"]),
                        st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
                        st.integers(min_value=1, max_value=24 * 30))
    return {
        "order": order,
        "canary": draw(st.none() | st.sampled_from(order)),
        "bake_s": draw(seconds),
        "bake_overrides": draw(st.dictionaries(st.sampled_from(order), seconds, max_size=3)),
        "canary_bake_s": draw(st.none() | seconds),
        "approvals": draw(st.lists(st.integers(min_value=1, max_value=5), max_size=3)),
        "freeze_windows": draw(st.lists(weekly | one_off, max_size=3)),
        "reserve": {"sites": draw(st.integers(min_value=1, max_value=2)),
                    "fleet_bake_s": draw(st.floats(min_value=1, max_value=30 * 86400))},
        "drain_timeout_s": draw(st.floats(min_value=0.5, max_value=3600)),
    }


@FUZZ_SLOW
@given(rollout=valid_rollout(), now=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                                                 timezones=st.sampled_from([UTC, ZoneInfo("Europe/Paris")])))
def test_fuzz_valid_policies_load_round_trip_and_plan(workdir: Path, rollout: dict[str, Any],
                                                      now: datetime) -> None:
    path = write(workdir, dump({"name": "fuzz", "rollout": rollout}))
    pol = load_policy(path)
    assert_round_trips(workdir, pol)
    plan = build_plan(estate=ESTATE, policy=pol, target="5.7.0")
    assert plan.waves[0].role == "canary" and plan.waves[-1].role == "reserve"
    assert len(plan.waves) == len(SITE_NAMES)
    active_freeze(pol, now)  # never raises on a valid policy


# --- the command ------------------------------------------------------------------------

def cli_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("plan")(plan_cmd.plan)

    @app.callback()
    def main() -> None:
        """Test harness."""

    return app


def run_plan(*args: str) -> Any:
    return CliRunner().invoke(cli_app(), ["plan", "--declared", "-i", str(INVENTORY), *args])


def test_plan_command_prints_the_table_reserve_and_digest() -> None:
    result = run_plan("--to", "5.7.0", "--policy", str(PRODUCTION))
    assert result.exit_code == 0, result.output
    for text in ("lille", "canary", "reserve", "5.6.0-lab1 -> 5.7.0", "required", "after 7d fleet-wide",
                 "version-diversity reserve: paris", "digest: "):
        assert text in result.output


def test_plan_command_holds_the_standing_reserve_of_a_release_never_live(tmp_path: Path) -> None:
    doc = yaml.safe_load(PRODUCTION.read_text())
    doc["rollout"]["reserve"]["standing_days"] = 14
    policy = tmp_path / "standing.yml"
    policy.write_text(yaml.safe_dump(doc))
    result = run_plan("--to", "5.7.0", "--policy", str(policy), "--journal", str(tmp_path / "none.sqlite"))
    assert result.exit_code == 0, result.output
    assert "standing reserve: paris keep(s) their release until 5.7.0 has been live 14 days" in result.output
    assert "(0.0 so far, by the journal)" in result.output
    data = json.loads(run_plan("--to", "5.7.0", "--policy", str(policy), "--json").stdout)
    assert data["standing"] == ["paris"] and data["reserve"] == []
    assert "paris" not in [w["site"] for w in data["waves"]]


def test_plan_command_json_is_the_plan() -> None:
    result = run_plan("--to", "5.7.0", "--policy", str(PRODUCTION), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data.pop("schema_version") == 1
    expected = build_plan(estate=load_inventory(INVENTORY), policy=load_policy(PRODUCTION), target="5.7.0")
    assert data == expected.model_dump(mode="json")


@pytest.mark.parametrize(("text", "expected"), [
    ("rollout:\n  sites_per_wave: 2\n", "refused by rule one-site-at-a-time"),
    ("rollout:\n  skip_canary: true\n", "refused by rule canary-first"),
    ("rollout:\n  reserve: {sites: 0}\n", "refused by rule known-good-reserve"),
    ("rollout:\n  colour: red\n", "rollout.colour: unknown key"),
    ("rollout: [\n", "not valid YAML"),
])
def test_plan_command_refuses_with_exit_2_and_no_traceback(workdir: Path, text: str, expected: str) -> None:
    path = write(workdir, text, "cli.yml")
    result = run_plan("--to", "5.7.0", "--policy", str(path))
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_plan_detailed_exitcode_says_whether_sites_would_change(tmp_path: Path) -> None:
    """--declared: the inventory alone, no network. Every host declares 5.6.0-lab1 in the example."""
    changes = run_plan("--to", "5.7.0", "--policy", str(PRODUCTION), "--json", "--detailed-exitcode")
    assert changes.exit_code == 2 and json.loads(changes.stdout)["waves"]
    current = load_inventory(INVENTORY).hosts[0].release
    nothing = run_plan("--to", current, "--policy", str(PRODUCTION), "--json", "--detailed-exitcode")
    assert nothing.exit_code == 0, nothing.output
    assert json.loads(nothing.stdout)["waves"] == []
    assert run_plan("--to", "5.7.0", "--policy", str(PRODUCTION), "--json").exit_code == 0  # without the flag


SHIPPED = sorted(p for p in (REPO / "policies").glob("*.yml") if not p.name.startswith("alerts"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_loads(path: Path) -> None:
    """The policies the README, the lab tests and the benchmarks name are valid as shipped."""
    policy = load_policy(path)
    assert policy.name and policy.gate.synthetic.calls_per_number >= policy.gate.synthetic.min_calls_per_number
