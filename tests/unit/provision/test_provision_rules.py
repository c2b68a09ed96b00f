"""The CrossGuard rules as plain functions: for each, a passing and violating input.

No mocks at all: the rules are pure functions of EstateFacts.
"""

from __future__ import annotations

import pytest

from orchestrator.provision import rules
from orchestrator.provision.rules import EstateFacts, IngressRule, SiteFacts


def site(name: str, **changes: object) -> SiteFacts:
    base = {"name": name, "zone": f"az-{name}", "capacity_cps": 400, "call_servers": 2,
            "placement": "anti-affinity", "placed": 2}
    return SiteFacts.model_validate({**base, **changes})


def good_estate(**changes: object) -> EstateFacts:
    base: dict[str, object] = {
        "sites": tuple(site(f"s{i}") for i in range(1, 7)),
        "ingress": (
            IngressRule(resource="ssh-from-bastion", protocol="tcp", port_min=22, port_max=22,
                        remote="10.20.0.0/24"),
            IngressRule(resource="sip-from-edge", protocol="udp", port_min=5060, port_max=5060,
                        remote="192.0.2.1/32"),
        ),
        "ssh_ports": frozenset({22}), "sip_ports": frozenset({5060}), "peak_cps": 1500,
    }
    return EstateFacts.model_validate({**base, **changes})


def with_site(index: int, **changes: object) -> EstateFacts:
    sites = list(good_estate().sites)
    sites[index] = sites[index].model_copy(update=changes)
    return good_estate(sites=tuple(sites))


def world(resource: str, **fields: object) -> EstateFacts:
    extra = IngressRule.model_validate({"resource": resource, **fields})
    return good_estate(ingress=(*good_estate().ingress, extra))


def test_the_good_estate_passes_every_rule() -> None:
    assert rules.evaluate(good_estate()) == {}


# --- exactly six sites -------------------------------------------------------------
def test_six_sites_pass() -> None:
    assert rules.exactly_six_sites(good_estate()) == []


@pytest.mark.parametrize("count", [0, 1, 5, 7])
def test_other_site_counts_violate(count: int) -> None:
    facts = good_estate(sites=tuple(site(f"s{i}") for i in range(count)))
    [message] = rules.exactly_six_sites(facts)
    assert f"has {count} sites" in message


# --- at least two call servers per site --------------------------------------------
def test_two_call_servers_per_site_pass() -> None:
    assert rules.two_call_servers_per_site(with_site(0, call_servers=3, placed=3)) == []


def test_a_site_with_one_call_server_violates() -> None:
    assert rules.two_call_servers_per_site(with_site(3, call_servers=1, placed=1)) == [
        "site s4 has 1 call server(s); at least 2 are required"]


# --- anti-affinity inside each site ------------------------------------------------
def test_hard_anti_affinity_passes() -> None:
    assert rules.anti_affinity_per_site(good_estate()) == []


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"placement": None, "placed": 0}, "has no anti-affinity placement group (found: none)"),
    ({"placement": "soft-anti-affinity"}, "found: soft-anti-affinity"),
    ({"placement": "affinity"}, "found: affinity"),
    ({"placed": 1}, "only 1 of its 2 call servers"),
])
def test_missing_or_weak_anti_affinity_violates(changes: dict[str, object], fragment: str) -> None:
    [message] = rules.anti_affinity_per_site(with_site(1, **changes))
    assert message.startswith("site s2")
    assert fragment in message


def test_process_isolation_is_accepted_in_the_lab_only() -> None:
    lab = good_estate(sites=tuple(site(f"s{i}", placement="process") for i in range(1, 7)), lab=True)
    assert rules.anti_affinity_per_site(lab) == []
    assert len(rules.anti_affinity_per_site(lab.model_copy(update={"lab": False}))) == 6


# --- no SSH or SIP ingress from the whole Internet ---------------------------------
def test_restricted_sources_pass() -> None:
    assert rules.no_world_open_ssh_or_sip(good_estate()) == []


@pytest.mark.parametrize("fields", [
    {"protocol": "tcp", "port_min": 443, "port_max": 443, "remote": "0.0.0.0/0"},  # neither SSH nor SIP
    {"protocol": "icmp", "remote": "0.0.0.0/0"},                                   # no ports at all
    {"protocol": "tcp", "port_min": 22, "port_max": 22, "remote_group": True},      # a peer security group
    {"protocol": "udp", "port_min": 5060, "port_max": 5060, "remote": "0.0.0.0/1"},  # wide, not the world
])
def test_world_rules_that_expose_neither_ssh_nor_sip_pass(fields: dict[str, object]) -> None:
    assert rules.no_world_open_ssh_or_sip(world("other", **fields)) == []


@pytest.mark.parametrize(("fields", "exposed"), [
    ({"protocol": "tcp", "port_min": 22, "port_max": 22, "remote": "0.0.0.0/0"}, "SSH port 22 from 0.0.0.0/0"),
    ({"protocol": "udp", "port_min": 5060, "port_max": 5060, "remote": "::/0"}, "SIP port 5060 from ::/0"),
    ({"protocol": "tcp", "port_min": 5061, "port_max": 5061, "remote": "0.0.0.0/0"}, "SIP port 5061"),
    ({"protocol": "tcp", "port_min": 1, "port_max": 65535, "remote": "0.0.0.0/0"},
     "SSH port 22, SSH port 2222, SIP port 5060, SIP port 5061 from 0.0.0.0/0"),
    ({"protocol": None, "remote": None}, "from anywhere"),  # OpenStack: no remote admits everyone
    ({"protocol": "tcp", "port_min": 2222, "port_max": 2222, "remote": "0.0.0.0/0"}, "SSH port 2222"),
])
def test_world_open_ssh_or_sip_violates(fields: dict[str, object], exposed: str) -> None:
    facts = world("open", **fields).model_copy(update={"ssh_ports": frozenset({22, 2222})})
    [message] = rules.no_world_open_ssh_or_sip(facts)
    assert message.startswith("open admits ")
    assert exposed in message


# --- distinct availability zones or regions ----------------------------------------
def test_distinct_zones_pass() -> None:
    assert rules.distinct_zones(good_estate()) == []


def test_shared_or_missing_zones_violate() -> None:
    assert rules.distinct_zones(with_site(2, zone="az-s1")) == ["sites s1, s3 share zone az-s1"]
    assert rules.distinct_zones(with_site(5, zone=None)) == ["site s6 names no availability zone or region"]


# --- N+1 capacity ------------------------------------------------------------------
def test_n_plus_one_passes_when_the_rest_carry_the_peak() -> None:
    # 6 x 400 cps, the largest out: 2000 >= 2000
    assert rules.n_plus_one_capacity(good_estate(peak_cps=2000)) == []


def test_n_plus_one_violates_when_losing_the_largest_site_drops_below_peak() -> None:
    lopsided = with_site(0, capacity_cps=1200).model_copy(update={"peak_cps": 2001})
    assert rules.n_plus_one_capacity(lopsided) == [
        "without its largest site the estate carries 2000 calls/s, less than the declared peak of 2001"]


def test_n_plus_one_needs_a_declared_peak() -> None:
    [message] = rules.n_plus_one_capacity(good_estate(peak_cps=None))
    assert "callfleet:peakCps" in message


# --- all together ------------------------------------------------------------------
def test_the_violating_estate_is_caught_by_the_right_rules() -> None:
    """Five sites, one of them with a single host, and SSH open to the world."""
    sites = (*tuple(site(f"s{i}") for i in range(1, 5)), site("s5", call_servers=1, placed=1))
    open_ssh = IngressRule(resource="s1-ssh22-bastion0", protocol="tcp", port_min=22, port_max=22,
                           remote="0.0.0.0/0")
    facts = good_estate(sites=sites, ingress=(open_ssh,), peak_cps=1200)
    found = rules.evaluate(facts)
    assert set(found) == {"exactly-six-sites", "two-call-servers-per-site", "no-world-open-ssh-sip"}
    assert found["two-call-servers-per-site"] == ["site s5 has 1 call server(s); at least 2 are required"]
    assert found["no-world-open-ssh-sip"] == ["s1-ssh22-bastion0 admits SSH port 22 from 0.0.0.0/0"]


def test_rule_names_are_unique_and_each_rule_is_published() -> None:
    names = [r.name for r in rules.RULES]
    assert len(set(names)) == len(names) == 6
