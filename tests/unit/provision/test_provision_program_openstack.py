"""The Pulumi program on the OpenStack substrate, under Pulumi's mocks.

Only the Pulumi engine is mocked (see conftest.py); the estate comes from the example
production inventory through load_inventory, as the program does in production.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import load_inventory, write_inventory
from orchestrator.provision.components import ESTATE_TYPE, SITE_TYPE
from orchestrator.provision.facts import facts_from_resources
from orchestrator.provision.program import declare_estate, estate_for
from orchestrator.provision.rules import evaluate
from orchestrator.provision.stack_config import config_from_values
from orchestrator.provision.stack_outputs import estate_from_outputs

from .conftest import ProgramRun, Registration

NETWORK = "openstack:networking/network:Network"
SUBNET = "openstack:networking/subnet:Subnet"
SECGROUP = "openstack:networking/secGroup:SecGroup"
RULE = "openstack:networking/secGroupRule:SecGroupRule"
SERVER_GROUP = "openstack:compute/serverGroup:ServerGroup"
PORT = "openstack:networking/port:Port"
INSTANCE = "openstack:compute/instance:Instance"
ROUTER_IF = "openstack:networking/routerInterface:RouterInterface"
PROVIDER = "pulumi:providers:openstack"
BASTION = "10.20.0.0/24"


def openstack_run(run_program: Callable[..., ProgramRun], inventory: Path, **values: Any) -> ProgramRun:
    config = config_from_values({"substrate": "openstack", "inventory": str(inventory), "image": "debian-12",
                                 "flavor": "cs.large", "keyPair": "ops", "bastionCidrs": [BASTION],
                                 "peakCps": 2000, **values}, project_dir=inventory.parent)
    estate = estate_for(config)
    return run_program(lambda: {"estate": declare_estate(estate=estate, config=config).estate})


@pytest.fixture
def run(run_program: Callable[..., ProgramRun], example_inventory: Path) -> ProgramRun:
    return openstack_run(run_program, example_inventory)


def site_of(run: ProgramRun, reg: Registration) -> str:
    parent = run.by_urn(reg.parent or "")
    assert parent.type == SITE_TYPE, f"{reg.name} is not a child of a site"
    return parent.name


def test_resource_counts_per_site(run: ProgramRun) -> None:
    assert len(run.of_type(ESTATE_TYPE)) == 1
    assert len(run.of_type(SITE_TYPE)) == 6
    for type_, per_site in ((NETWORK, 1), (SUBNET, 1), (SECGROUP, 1), (SERVER_GROUP, 1), (PORT, 2),
                            (INSTANCE, 2), (RULE, 1 + 2 * 7)):  # SSH from the bastion; SIP udp+tcp x 7 sources
        found = run.of_type(type_)
        assert len(found) == 6 * per_site, type_
        assert sorted({site_of(run, r) for r in found}) == sorted(s.name for s in run.of_type(SITE_TYPE))
    assert not run.of_type(ROUTER_IF) and not run.of_type(PROVIDER)


def test_call_servers_are_pinned_to_their_address_zone_and_anti_affinity_group(run: ProgramRun) -> None:
    estate = load_inventory(Path(__file__).resolve().parents[3] / "inventory" / "production.example.yml")
    for host in estate.hosts:
        site = estate.site(host.site)
        instance = run.one(host.name)
        port = run.one(f"{host.name}-port")
        group = run.one(f"{site.name}-servers")
        assert site_of(run, instance) == site_of(run, port) == site_of(run, group) == site.name
        assert group.inputs["policies"] == "anti-affinity"
        assert instance.inputs["availabilityZone"] == site.region
        assert instance.inputs["imageName"] == "debian-12" and instance.inputs["flavorName"] == "cs.large"
        assert instance.inputs["keyPair"] == "ops"
        assert instance.inputs["schedulerHints"] == [{"group": f"{site.name}-servers-id"}]
        assert instance.inputs["networks"] == [{"port": f"{host.name}-port-id"}]
        assert {group.urn, port.urn} <= set(instance.dependencies)
        assert port.inputs["fixedIps"] == [{"subnetId": f"{site.name}-subnet-id", "ipAddress": str(host.address)}]
        assert port.inputs["securityGroupIds"] == [f"{site.name}-callservers-id"]
        assert ip_address(str(host.address)) in ip_network(run.one(f"{site.name}-subnet").inputs["cidr"])


def test_security_rules_admit_ssh_from_the_bastion_and_sip_from_edge_and_sites_only(run: ProgramRun) -> None:
    subnets = {ip_network(r.inputs["cidr"]) for r in run.of_type(SUBNET)}
    assert len(subnets) == 6  # one subnet per site, no two alike
    for rule in run.of_type(RULE):
        assert rule.inputs["direction"] == "ingress"
        remote = ip_network(rule.inputs["remoteIpPrefix"])
        if rule.inputs["portRangeMin"] == 22:
            assert (rule.inputs["protocol"], str(remote)) == ("tcp", BASTION)
        else:
            assert rule.inputs["portRangeMin"] == rule.inputs["portRangeMax"] == 5060
            assert remote in subnets or str(remote) == "192.0.2.1/32"  # a site, or the edge router


def test_mocked_outputs_give_the_inventory_back(run: ProgramRun, example_inventory: Path, tmp_path: Path) -> None:
    estate = estate_from_outputs({"estate": run.values["estate"]}, stack="prod")
    write_inventory(estate, tmp_path / "prod.yml")
    assert load_inventory(tmp_path / "prod.yml") == load_inventory(example_inventory)


def test_the_example_estate_passes_the_policies(run: ProgramRun) -> None:
    facts = facts_from_resources(run.views())
    assert [s.placed for s in facts.sites] == [2] * 6
    assert evaluate(facts) == {}
    as_previewed = [dataclasses.replace(r, outputs=r.inputs).view() for r in run.registrations]
    assert evaluate(facts_from_resources(as_previewed)) == {}


def test_region_placement_gives_each_region_its_provider(run_program: Callable[..., ProgramRun],
                                                         example_inventory: Path) -> None:
    run = openstack_run(run_program, example_inventory, placement="region", routerId="r-transit")
    providers = {r.name: r for r in run.of_type(PROVIDER)}
    assert sorted(providers) == sorted(f"region-{r}" for r in ("eu-west-par", "eu-west-lys", "eu-south-mrs",
                                                               "eu-west-rns", "eu-west-bod", "eu-north-lil"))
    paris = run.one("paris-cs1")
    assert "availabilityZone" not in paris.inputs
    assert (paris.provider or "").startswith(providers["region-eu-west-par"].urn)
    assert [r.inputs["routerId"] for r in run.of_type(ROUTER_IF)] == ["r-transit"] * 6


def violating_inventory(example: Path, tmp_path: Path) -> Path:
    """The example estate with five sites, and one host in one of them."""
    doc = yaml.safe_load(example.read_text())
    sites = doc["all"]["children"]["callservers"]["children"]
    del sites["lille"]
    del sites["rennes"]["hosts"]["rennes-cs2"]
    path = tmp_path / "violating.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_violating_estate_is_reported_by_the_right_rules(run_program: Callable[..., ProgramRun],
                                                             example_inventory: Path, tmp_path: Path) -> None:
    run = openstack_run(run_program, violating_inventory(example_inventory, tmp_path),
                        bastionCidrs=["0.0.0.0/0"], peakCps=1200)
    found = evaluate(facts_from_resources(run.views()))
    assert set(found) == {"exactly-six-sites", "two-call-servers-per-site", "no-world-open-ssh-sip"}
    assert "has 5 sites" in found["exactly-six-sites"][0]
    assert found["two-call-servers-per-site"] == ["site rennes has 1 call server(s); at least 2 are required"]
    assert sorted(found["no-world-open-ssh-sip"]) == sorted(
        f"{s}-ssh22-bastion0 admits SSH port 22 from 0.0.0.0/0"
        for s in ("paris", "lyon", "marseille", "rennes", "bordeaux"))


def test_a_site_cidr_that_misses_a_host_is_refused(run_program: Callable[..., ProgramRun],
                                                   example_inventory: Path) -> None:
    with pytest.raises(InvalidInput, match=r"host paris-cs1 \(192.0.2.11\) is not in the site subnet 10.0.0.0/24"):
        openstack_run(run_program, example_inventory, siteCidrs={"paris": "10.0.0.0/24"})
