"""The CrossGuard glue: the stack policies fed real pulumi_policy resources.

The resources come from the program run under Pulumi's mocks (conftest.py) and are
wrapped the way the policy analyzer wraps them (unknown-checking proxies, parents and
dependencies as objects), including values a preview does not know yet. In the last test
PolicyPack, the analyzer's gRPC server to the engine, is replaced by a recorder: it would
otherwise block serving the engine.
"""

from __future__ import annotations

import runpy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pulumi_policy
import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from orchestrator.provision.crossguard import PACK_NAME, plain, stack_facts, stack_policies
from orchestrator.provision.facts import UNKNOWN
from orchestrator.provision.program import declare_estate, estate_for
from orchestrator.provision.rules import RULES
from orchestrator.provision.stack_config import config_from_values

from .conftest import ProgramRun, Registration
from .test_provision_program_openstack import INSTANCE, violating_inventory

PACK_DIR = Path(__file__).resolve().parents[3] / "policies" / "crossguard"


def analyzer_resources(registrations: Iterable[Registration],
                       unknown: Callable[[Registration, str], bool] = lambda r, k: False) -> list[PolicyResource]:
    """The registrations as AnalyzeStack hands them to a stack policy."""
    regs = list(registrations)
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    resources = {}
    for r in regs:
        props = {k: (UNKNOWN_STRING_VALUE if unknown(r, k) else v) for k, v in r.outputs.items()}
        resources[r.urn] = PolicyResource(r.type, unknown_checking_proxy(props), r.urn, r.name, opts,
                                          None, None, [], {})
    for r in regs:
        resource = resources[r.urn]
        resource.parent = resources.get(r.parent or "")
        resource.dependencies.extend(resources[d] for d in r.dependencies if d in resources)
    return list(resources.values())


def violations(resources: list[PolicyResource]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for policy in stack_policies():
        policy.validate(StackValidationArgs(resources),
                        lambda message, urn, name=policy.name: found.setdefault(name, []).append(message))
    return found


def openstack(run_program: Callable[..., ProgramRun], inventory: Path, **values: Any) -> ProgramRun:
    config = config_from_values({"substrate": "openstack", "inventory": str(inventory), "image": "img",
                                 "flavor": "fl", "bastionCidrs": ["10.20.0.0/24"], "peakCps": 2000, **values},
                                project_dir=inventory.parent)
    estate = estate_for(config)
    return run_program(lambda: {"estate": declare_estate(estate=estate, config=config).estate})


def test_one_mandatory_policy_per_rule() -> None:
    policies = stack_policies()
    assert [p.name for p in policies] == [r.name for r in RULES]
    assert {p.enforcement_level for p in policies} == {EnforcementLevel.MANDATORY}


def test_the_example_estate_passes_even_with_preview_unknowns(
        run_program: Callable[..., ProgramRun], example_inventory: Path) -> None:
    run = openstack(run_program, example_inventory)
    # During a preview ids are unknown: scheduler hints, ports, security group ids.
    preview = analyzer_resources(run.registrations, lambda r, k: k in ("schedulerHints", "networks",
                                                                       "securityGroupId", "fixedIps"))
    assert violations(preview) == {}
    nested = [Registration(**{**r.__dict__, "outputs": {**r.outputs, "schedulerHints": [
        {"group": UNKNOWN_STRING_VALUE}]}}) if r.type == INSTANCE else r for r in run.registrations]
    assert violations(analyzer_resources(nested)) == {}
    assert violations(analyzer_resources(run.registrations)) == {}


def test_a_call_server_outside_the_group_is_reported(
        run_program: Callable[..., ProgramRun], example_inventory: Path) -> None:
    run = openstack(run_program, example_inventory)
    regs = [Registration(**{**r.__dict__, "outputs": {k: v for k, v in r.outputs.items() if k != "schedulerHints"}})
            if r.name == "lille-cs2" else r for r in run.registrations]
    assert violations(analyzer_resources(regs)) == {
        "anti-affinity-per-site": ["site lille: only 1 of its 2 call servers are in its anti-affinity group"]}


def test_the_violating_estate_is_reported_through_the_policies(
        run_program: Callable[..., ProgramRun], example_inventory: Path, tmp_path: Path) -> None:
    run = openstack(run_program, violating_inventory(example_inventory, tmp_path),
                    bastionCidrs=["0.0.0.0/0"], peakCps=1200)
    found = violations(analyzer_resources(run.registrations))
    assert set(found) == {"exactly-six-sites", "two-call-servers-per-site", "no-world-open-ssh-sip"}
    assert len(found["no-world-open-ssh-sip"]) == 5


def test_soft_anti_affinity_is_reported(run_program: Callable[..., ProgramRun], example_inventory: Path) -> None:
    run = openstack(run_program, example_inventory)
    regs = [r if r.name != "lyon-servers" else Registration(**{**r.__dict__, "outputs": {
        **r.outputs, "policies": "soft-anti-affinity"}}) for r in run.registrations]
    found = violations(analyzer_resources(regs))
    assert found == {"anti-affinity-per-site": [
        "site lyon has no anti-affinity placement group (found: soft-anti-affinity)"]}


def test_an_unknown_remote_prefix_is_not_taken_for_the_world(
        run_program: Callable[..., ProgramRun], example_inventory: Path) -> None:
    run = openstack(run_program, example_inventory)
    facts = stack_facts(StackValidationArgs(analyzer_resources(
        run.registrations, lambda r, k: k == "remoteIpPrefix")))
    assert facts.ingress and all(rule.remote == "unknown" for rule in facts.ingress)
    assert not [name for name in violations(analyzer_resources(
        run.registrations, lambda r, k: k == "remoteIpPrefix")) if name == "no-world-open-ssh-sip"]


def test_plain_unwraps_proxies_and_marks_unknowns() -> None:
    proxied = unknown_checking_proxy({"a": [1, UNKNOWN_STRING_VALUE, {"b": UNKNOWN_STRING_VALUE}], "c": "x"})
    assert plain(proxied) == {"a": [1, UNKNOWN, {"b": UNKNOWN}], "c": "x"}


def test_the_pack_builds_all_policies_as_mandatory(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    def record(**kwargs: Any) -> None:
        built.update(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", record)
    runpy.run_path(str(PACK_DIR / "__main__.py"), run_name="__main__")
    assert built["name"] == PACK_NAME
    assert built["enforcement_level"] == EnforcementLevel.MANDATORY
    assert [p.name for p in built["policies"]] == [r.name for r in RULES]


def test_the_pack_is_a_python_policy_pack() -> None:
    doc = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert doc["runtime"]["name"] == "python"
