"""The Pulumi program on the lab substrate, under Pulumi's mocks.

Only the Pulumi engine is mocked (see conftest.py): the program, the lab topology, the
estate model and the inventory writer/loader run for real. The LabSite provider's
create/delete are not executed under mocks (they would start Kamailio); the mocks report
what create returns (lab_site_outputs).
"""

from __future__ import annotations

import dataclasses
import pickle
import runpy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from orchestrator.estate.inventory import load_inventory, write_inventory
from orchestrator.lab.topology import LabParams, lab_estate
from orchestrator.provision.components import ESTATE_TYPE, SITE_TYPE
from orchestrator.provision.facts import LAB_INGRESS_TYPE, LAB_SITE_TYPE, facts_from_resources
from orchestrator.provision.lab_substrate import LabSiteProvider
from orchestrator.provision.program import INVALID_INPUT_MARKER, declare_estate, estate_for, main
from orchestrator.provision.rules import evaluate
from orchestrator.provision.stack_config import config_from_values
from orchestrator.provision.stack_outputs import estate_from_outputs

from .conftest import ProgramRun


@pytest.fixture
def stack_config() -> Iterator[Callable[[dict[str, str]], None]]:
    """Set the stack config the program reads through pulumi.Config; cleared afterwards."""

    def set_config(values: dict[str, str]) -> None:
        pulumi.runtime.set_all_config({f"callfleet:{k}": v for k, v in values.items()})

    yield set_config
    pulumi.runtime.set_all_config({})


def lab_run(run_program: Callable[..., ProgramRun], state_dir: Path, **values: Any) -> ProgramRun:
    config = config_from_values({"substrate": "lab", "labStateDir": str(state_dir), "peakCps": 900, **values},
                                project_dir=state_dir)
    estate = estate_for(config)
    return run_program(lambda: {"estate": declare_estate(estate=estate, config=config).estate})


def test_one_component_and_one_lab_site_per_site(run_program: Callable[..., ProgramRun], tmp_path: Path) -> None:
    run = lab_run(run_program, tmp_path)
    [root] = run.of_type(ESTATE_TYPE)
    sites = run.of_type(SITE_TYPE)
    lab_sites = run.of_type(LAB_SITE_TYPE)
    assert len(sites) == len(lab_sites) == 6
    # the estate, the lab network (bridge and machines), 6 site components, 6 lab sites and
    # their 6 SSH ingress rules
    assert len(run.registrations) == 1 + 1 + 6 + 6 + 6
    [network] = [r for r in run.registrations if r.type.endswith("callfleet:LabNetwork")]
    assert {k: v for k, v in network.inputs.items() if k != "__provider"} == {
        "stateDir": str(tmp_path), "sites": 6, "hostsPerSite": 2, "base": "198.18.77"}
    assert all(network.urn in (s.dependencies or ()) for s in lab_sites)  # sites come after the network
    assert root.parent is not None and root.parent.endswith("::callfleet-test")  # the stack
    assert {s.parent for s in sites} == {root.urn}
    for lab_site in lab_sites:
        parent = run.by_urn(lab_site.parent or "")
        assert parent.type == SITE_TYPE
        assert lab_site.name == f"{parent.name}-lab"
        assert lab_site.inputs["site"] == parent.name
        assert lab_site.inputs["stateDir"] == str(tmp_path)
        assert [h["name"] for h in lab_site.inputs["hosts"]] == [f"{parent.name}-cs1", f"{parent.name}-cs2"]
        assert lab_site.inputs["isolation"] == lab_site.outputs["isolation"] == "process"
    assert root.inputs["peakCps"] == 900 and root.inputs["lab"] is True
    assert run.one("site3").inputs["zone"] == "lab-zone-3"
    assert run.one("site3").inputs["sshPorts"] == [22]


def test_every_site_admits_ssh_from_the_lab_network_only_by_default(
        run_program: Callable[..., ProgramRun], tmp_path: Path) -> None:
    run = lab_run(run_program, tmp_path)
    rules = run.of_type(LAB_INGRESS_TYPE)
    assert len(rules) == 6
    for rule in rules:
        site = run.by_urn(rule.parent or "")
        assert site.type == SITE_TYPE and rule.inputs["site"] == site.name
        [lab_site] = [s for s in run.of_type(LAB_SITE_TYPE) if s.parent == site.urn]
        assert lab_site.urn in rule.dependencies  # applied on machines that are up
        assert (rule.inputs["protocol"], rule.inputs["portRangeMin"], rule.inputs["portRangeMax"]) == ("tcp", 22, 22)
        assert rule.inputs["remoteIpPrefixes"] == ["198.18.77.0/24"]
    facts = facts_from_resources(run.views())
    assert {(r.remote, r.port_min) for r in facts.ingress} == {("198.18.77.0/24", 22)}
    assert len(facts.ingress) == 6


def test_a_world_open_ssh_source_is_refused_by_the_ingress_rule(
        run_program: Callable[..., ProgramRun], tmp_path: Path) -> None:
    run = lab_run(run_program, tmp_path, bastionCidrs=["198.18.77.1/32", "0.0.0.0/0"])
    assert {tuple(r.inputs["remoteIpPrefixes"]) for r in run.of_type(LAB_INGRESS_TYPE)} == {
        ("198.18.77.1/32", "0.0.0.0/0")}
    violations = evaluate(facts_from_resources(run.views()))
    assert set(violations) == {"no-world-open-ssh-sip"}
    assert len(violations["no-world-open-ssh-sip"]) == 6
    assert "site1-lab-ssh admits SSH port 22 from 0.0.0.0/0" in violations["no-world-open-ssh-sip"]


def test_lab_params_from_config_shape_the_stack(run_program: Callable[..., ProgramRun], tmp_path: Path) -> None:
    run = lab_run(run_program, tmp_path, labSites="3", labHostsPerSite="4", labBase="198.18.88")
    lab_sites = sorted(run.of_type(LAB_SITE_TYPE), key=lambda r: r.name)  # registration order is async
    assert [s.inputs["site"] for s in lab_sites] == ["site1", "site2", "site3"]
    assert [h["address"] for h in lab_sites[2].inputs["hosts"]] == \
        [f"198.18.88.{i}" for i in range(12, 16)]  # after the edge, the services and sites 1-2


def test_mocked_outputs_give_an_inventory_that_loads_as_the_lab_estate(
        run_program: Callable[..., ProgramRun], tmp_path: Path) -> None:
    """outputs -> estate -> Ansible inventory -> load_inventory == lab_estate(...)"""
    run = lab_run(run_program, tmp_path)
    estate = estate_from_outputs({"estate": run.values["estate"]}, stack="lab")
    inventory = tmp_path / "inventory.yml"
    write_inventory(estate, inventory)
    assert load_inventory(inventory) == lab_estate(LabParams(), tmp_path / "machines")


def test_the_lab_stack_passes_the_policies(run_program: Callable[..., ProgramRun], tmp_path: Path) -> None:
    run = lab_run(run_program, tmp_path)
    facts = facts_from_resources(run.views())
    assert facts.lab is True
    assert [s.call_servers for s in facts.sites] == [2] * 6
    assert evaluate(facts) == {}
    # A preview's policies see the inputs of what it would create: they must pass as well.
    as_previewed = [dataclasses.replace(r, outputs=r.inputs).view() for r in run.registrations]
    assert evaluate(facts_from_resources(as_previewed)) == {}


def test_a_one_host_lab_is_refused_by_the_redundancy_rule(
        run_program: Callable[..., ProgramRun], tmp_path: Path) -> None:
    run = lab_run(run_program, tmp_path, labHostsPerSite="1")
    assert set(evaluate(facts_from_resources(run.views()))) == {"two-call-servers-per-site"}


def test_main_reads_the_stack_config(run_program: Callable[..., ProgramRun], tmp_path: Path,
                                     stack_config: Callable[[dict[str, str]], None]) -> None:
    stack_config({"substrate": "lab", "labStateDir": str(tmp_path), "labSites": "2"})

    def program() -> dict[str, pulumi.Output[Any]]:
        main()
        return {}

    run = run_program(program)
    assert sorted(r.name for r in run.of_type(LAB_SITE_TYPE)) == ["site1-lab", "site2-lab"]


def test_the_program_directory_runs_as_the_engine_runs_it(
        run_program: Callable[..., ProgramRun], tmp_path: Path,
        stack_config: Callable[[dict[str, str]], None]) -> None:
    """Pulumi.yaml names the directory: the language host runs its __main__.py like this."""
    stack_config({"substrate": "lab", "labStateDir": str(tmp_path), "peakCps": "600"})
    program_dir = Path(__file__).resolve().parents[3] / "orchestrator" / "provision"

    def program() -> dict[str, pulumi.Output[Any]]:
        runpy.run_path(str(program_dir), run_name="__main__")
        return {}

    run = run_program(program)
    assert len(run.of_type(LAB_SITE_TYPE)) == 6


def test_main_turns_a_config_error_into_a_marked_run_error(
        tmp_path: Path, stack_config: Callable[[dict[str, str]], None]) -> None:
    stack_config({"substrate": "lab", "labStateDir": str(tmp_path), "labSites": "13"})
    with pytest.raises(pulumi.RunError) as caught:
        main()
    assert str(caught.value).startswith(INVALID_INPUT_MARKER)
    assert "callfleet:labSites" in str(caught.value)


def test_the_provider_replaces_a_site_whose_identity_changes() -> None:
    provider = LabSiteProvider()
    olds = {"site": "site1", "stateDir": "/tmp/lab", "hosts": [{"name": "site1-cs1"}]}
    assert provider.diff("id", olds, dict(olds)).changes is False
    moved = provider.diff("id", olds, {**olds, "hosts": [{"name": "site1-cs1"}, {"name": "site1-cs2"}]})
    assert moved.changes is True
    assert moved.replaces == ["hosts"]
    assert moved.delete_before_replace is True


def test_the_provider_pickles_by_reference_to_the_lab_code() -> None:
    # The engine's provider process unpickles it: it must resolve to this importable class.
    assert type(pickle.loads(pickle.dumps(LabSiteProvider()))) is LabSiteProvider
