"""Stack config, address planning and stack outputs: plain functions, no mocks."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import Estate, Site
from orchestrator.lab.topology import LabParams, lab_estate
from orchestrator.provision.addressing import derived_site_network, site_networks
from orchestrator.provision.project import locate_project, policy_pack_dir
from orchestrator.provision.stack_config import (
    LabSubstrate,
    OpenStackSubstrate,
    config_from_values,
    find_project_dir,
    read_stack_config,
)
from orchestrator.provision.stack_outputs import estate_from_outputs, provisioned_estate

REPO = Path(__file__).resolve().parents[3]
OPENSTACK = {"substrate": "openstack", "inventory": "inventory/production.example.yml", "image": "img",
             "flavor": "fl", "bastionCidrs": ["10.20.0.7/24"]}


def test_lab_defaults_and_relative_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLEET_LAB_DIR", str(tmp_path / "lab"))
    config = config_from_values({"substrate": "lab"}, project_dir=tmp_path)
    assert config.substrate == LabSubstrate(state_dir=tmp_path / "lab")
    assert config.peak_cps is None
    relative = config_from_values({"substrate": "lab", "labStateDir": "state", "labSites": "3", "peakCps": "500"},
                                  project_dir=tmp_path)
    assert relative.substrate == LabSubstrate(state_dir=tmp_path / "state", sites=3)
    assert relative.peak_cps == 500


def test_lab_ssh_sources_default_to_the_lab_network_and_are_normalised(tmp_path: Path) -> None:
    lab = config_from_values({"substrate": "lab", "labStateDir": str(tmp_path), "labBase": "198.18.88"},
                             project_dir=tmp_path).substrate
    assert isinstance(lab, LabSubstrate)
    assert lab.ssh_sources() == ("198.18.88.0/24",)
    narrowed = config_from_values({"substrate": "lab", "labStateDir": str(tmp_path),
                                   "bastionCidrs": ["198.18.77.1/32", "198.18.77.9/28"]}, project_dir=tmp_path)
    assert isinstance(narrowed.substrate, LabSubstrate)
    assert narrowed.substrate.ssh_sources() == ("198.18.77.1/32", "198.18.77.0/28")


def test_openstack_config_resolves_the_inventory_and_normalises_cidrs() -> None:
    config = config_from_values(OPENSTACK, project_dir=REPO)
    assert isinstance(config.substrate, OpenStackSubstrate)
    assert config.substrate.inventory == REPO / "inventory" / "production.example.yml"
    assert config.substrate.bastion_cidrs == ("10.20.0.0/24",)
    assert config.substrate.placement == "availability-zone"


@pytest.mark.parametrize(("values", "message"), [
    ({}, "stack config callfleet:substrate is not set"),
    ({"substrate": "aws"}, "stack config callfleet:substrate: must be lab or openstack"),
    ({**OPENSTACK, "image": None}, "stack config callfleet:image:"),
    ({k: v for k, v in OPENSTACK.items() if k != "bastionCidrs"},
     "stack config callfleet:bastionCidrs: Field required"),
    ({**OPENSTACK, "bastionCidrs": ["bastion"]}, "stack config callfleet:bastionCidrs: 'bastion' is not a CIDR"),
    ({**OPENSTACK, "placement": "rack"}, "stack config callfleet:placement:"),
    ({"substrate": "lab", "image": "img"}, "stack config callfleet:image: is not used by this substrate"),
    ({"substrate": "lab", "labSites": "13"}, "stack config callfleet:labSites: 13 is out of range"),
    ({"substrate": "lab", "labBase": "10.0"}, "stack config callfleet:labBase:"),
    ({"substrate": "lab", "peakCps": "0"}, "stack config callfleet:peakCps:"),
    ({"substrate": "lab", "bastionCidrs": ["lab"]}, "stack config callfleet:bastionCidrs: 'lab' is not a CIDR"),
    ({"substrate": "lab", "bastionCidrs": ["198.18.77.128/25"]},
     "stack config callfleet:bastionCidrs: SSH ingress 198.18.77.128/25 would shut the orchestrator out: "
     "it connects from 198.18.77.1"),
])
def test_bad_config_names_the_key(values: dict[str, object], message: str) -> None:
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(InvalidInput) as caught:
        config_from_values(values, project_dir=REPO)
    assert caught.value.message.startswith(message)


def test_read_stack_config_uses_the_getters() -> None:
    scalars = {"substrate": "openstack", "inventory": OPENSTACK["inventory"], "image": "img", "flavor": "fl"}
    objects = {"bastionCidrs": ["10.0.0.0/8"], "siteCidrs": {"paris": "192.0.2.0/28"}}
    config = read_stack_config(get=scalars.get, get_object=objects.get, project_dir=REPO)
    assert isinstance(config.substrate, OpenStackSubstrate)
    assert config.substrate.site_cidrs == {"paris": "192.0.2.0/28"}


def test_find_project_dir_walks_up_to_pulumi_yaml(tmp_path: Path) -> None:
    assert find_project_dir(start=REPO / "orchestrator" / "provision") == REPO
    assert find_project_dir(start=tmp_path) == tmp_path


def test_locate_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLFLEET_PROJECT_DIR", raising=False)
    assert locate_project(start=REPO / "docs") == REPO
    assert locate_project(start=tmp_path) == REPO  # falls back to the checkout
    assert policy_pack_dir(REPO).is_dir()
    monkeypatch.setenv("CALLFLEET_PROJECT_DIR", str(tmp_path))
    with pytest.raises(InvalidInput, match=r"no callfleet Pulumi\.yaml there"):
        locate_project(start=REPO)


def lab() -> Estate:
    """A six-site estate whose sites sit on their own addresses (127.90.<site>.<host>), as an
    OpenStack estate's would; the lab itself puts every machine in one /24."""
    estate = lab_estate(LabParams(sites=6, hosts_per_site=3, base="198.18.90"), Path("/tmp/x"))
    sites = tuple(s.model_copy(update={"hosts": tuple(
        h.model_copy(update={"address": IPv4Address(f"127.90.{i}.{j}")}) for j, h in enumerate(s.hosts, 1))})
        for i, s in enumerate(estate.sites, 1))
    return estate.model_copy(update={"sites": sites})


def test_site_networks_are_derived_small_and_disjoint() -> None:
    plan = site_networks(lab(), overrides={})
    assert {str(n) for n in plan.values()} == {f"127.90.{s}.0/28" for s in range(1, 7)}


def test_a_site_spread_over_addresses_gets_a_wider_subnet() -> None:
    site = lab().sites[0]
    far = site.model_copy(update={"hosts": (site.hosts[0], site.hosts[1].model_copy(
        update={"address": IPv4Address("127.90.1.200")}))})
    assert str(derived_site_network(Site.model_validate(far.model_dump()))) == "127.90.1.0/24"


def test_overlapping_site_subnets_are_refused() -> None:
    with pytest.raises(InvalidInput, match="sites site1 and site2 would share addresses"):
        site_networks(lab(), overrides={"site1": "127.90.0.0/16", "site2": "127.90.2.0/24"})
    with pytest.raises(InvalidInput, match="names no site of the estate: paris"):
        site_networks(lab(), overrides={"paris": "10.0.0.0/24"})


def test_provisioned_estate_takes_the_substrate_addresses() -> None:
    estate = lab()
    hosts = [[{**h.model_dump(mode="json"), "address": f"10.{i}.0.{j}"} for j, h in enumerate(s.hosts, 1)]
             for i, s in enumerate(estate.sites, 1)]
    doc = provisioned_estate(estate=estate, hosts=hosts)
    back = estate_from_outputs({"estate": doc}, stack="s")
    assert str(back.host("site2-cs3").address) == "10.2.0.3"
    assert back.model_copy(update={"sites": estate.sites}) == estate


def test_outputs_without_an_estate_are_refused() -> None:
    with pytest.raises(InvalidInput, match="stack prod has no `estate` output"):
        estate_from_outputs({}, stack="prod")
    with pytest.raises(InvalidInput, match=r"stack prod: output estate\.sites"):
        estate_from_outputs({"estate": {"name": "x", "sites": [], "numbers": []}}, stack="prod")
