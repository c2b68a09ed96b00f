"""Read EstateFacts from the resources of a stack, as Pulumi hands them to a stack policy.

Declared facts (site names, zones, capacity, ports, peak) come from the callfleet
components; what was really created (call servers, placement groups, ingress rules) from
the substrate's resources, found under a site through the parent chain. During a preview
some values are not known yet: they arrive as UNKNOWN and are judged conservatively.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.provision.components import ESTATE_TYPE, SITE_TYPE
from orchestrator.provision.rules import ANTI_AFFINITY, EstateFacts, IngressRule, SiteFacts

INSTANCE_TYPE = "openstack:compute/instance:Instance"
SERVER_GROUP_TYPE = "openstack:compute/serverGroup:ServerGroup"
SEC_RULE_TYPE = "openstack:networking/secGroupRule:SecGroupRule"
LAB_SITE_TYPE = "pulumi-python:dynamic/callfleet:LabSite"
LAB_INGRESS_TYPE = "pulumi-python:dynamic/callfleet:LabSshIngress"


class _Unknown:
    """A value the engine does not know yet (preview)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class ResourceView:
    """The parts of a stack resource the facts need; plain values, UNKNOWN where unknown."""

    type: str
    name: str
    urn: str
    parent: str | None = None
    props: Mapping[str, Any] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()


def _known(value: Any) -> bool:
    return value is not None and value is not UNKNOWN


def _int(value: Any, default: int = 0) -> int:
    return int(value) if _known(value) and isinstance(value, int | float) else default


def _ints(value: Any) -> frozenset[int]:
    if not _known(value) or not isinstance(value, Sequence):
        return frozenset()
    return frozenset(int(v) for v in value if isinstance(v, int | float))


def _site_of(view: ResourceView, by_urn: Mapping[str, ResourceView]) -> ResourceView | None:
    seen: set[str] = set()
    parent = view.parent
    while parent and parent in by_urn and parent not in seen:
        seen.add(parent)
        candidate = by_urn[parent]
        if candidate.type == SITE_TYPE:
            return candidate
        parent = candidate.parent
    return None


def _policy_of(props: Mapping[str, Any]) -> str | None:
    # pulumi-openstack 5 has one `policies` string; older versions a list of one.
    policies = props.get("policies")
    if isinstance(policies, str) and policies is not UNKNOWN:
        return policies
    if isinstance(policies, Sequence) and len(policies) == 1 and isinstance(policies[0], str):
        return policies[0]
    return None


def _has_hint_group(props: Mapping[str, Any]) -> bool:
    hints = props.get("schedulerHints")
    if hints is UNKNOWN:
        # Not known during a preview; the dependency on the group (always known) decides.
        return True
    if not isinstance(hints, Sequence):
        return False
    return any(h is UNKNOWN or (isinstance(h, Mapping) and h.get("group") is not None) for h in hints)


@dataclass
class _SiteAcc:
    view: ResourceView
    call_servers: int = 0
    groups: dict[str, str | None] = field(default_factory=dict)  # server group urn -> policy
    hinted: list[tuple[str, ...]] = field(default_factory=list)  # dependencies of hinted servers
    lab_isolation: str | None = None
    lab_hosts: int = 0


def _site_facts(acc: _SiteAcc) -> SiteFacts:
    props = acc.view.props
    hard = {urn for urn, policy in acc.groups.items() if policy == ANTI_AFFINITY}
    if hard:
        placement: str | None = ANTI_AFFINITY
    else:
        placement = next((p for p in acc.groups.values() if p), acc.lab_isolation)
    # A server is placed when its scheduler hint names (depends on) a hard anti-affinity
    # group of its own site; ids may be unknown during a preview, dependencies never are.
    placed = sum(1 for deps in acc.hinted if hard.intersection(deps))
    if acc.lab_isolation is not None and not acc.groups:
        placed += acc.lab_hosts
    zone = props.get("zone")
    return SiteFacts(name=str(props.get("siteName") or acc.view.name),
                     zone=str(zone) if _known(zone) else None,
                     capacity_cps=_int(props.get("capacityCps")),
                     call_servers=acc.call_servers,
                     placement=placement,
                     placed=placed)


def _ingress(view: ResourceView) -> IngressRule | None:
    p = view.props
    direction = p.get("direction")
    if _known(direction) and direction != "ingress":
        return None
    remote = p.get("remoteIpPrefix")
    group = p.get("remoteGroupId") or p.get("remoteAddressGroupId")
    protocol = p.get("protocol")
    return IngressRule(
        resource=view.name,
        protocol=str(protocol).lower() if _known(protocol) and protocol != "" else None,
        port_min=_int(p.get("portRangeMin")) or None,
        port_max=_int(p.get("portRangeMax")) or None,
        # An unknown remote prefix is not the world: it is computed from another resource.
        remote=str(remote) if _known(remote) and remote != "" else ("unknown" if remote is UNKNOWN else None),
        remote_group=group is not None,
    )


def _lab_ingress(view: ResourceView) -> list[IngressRule]:
    # One rule per admitted network; networks not known yet (computed) are not the world.
    p = view.props
    prefixes = p.get("remoteIpPrefixes")
    remotes = ["unknown"]
    if _known(prefixes) and isinstance(prefixes, Sequence) and not isinstance(prefixes, str):
        remotes = [str(x) if _known(x) else "unknown" for x in prefixes]
    return [IngressRule(resource=view.name, protocol="tcp", port_min=_int(p.get("portRangeMin")) or None,
                        port_max=_int(p.get("portRangeMax")) or None, remote=remote)
            for remote in remotes]


def facts_from_resources(resources: Iterable[ResourceView]) -> EstateFacts:
    """The facts of a stack from its resources (any order)."""
    views = list(resources)
    by_urn = {v.urn: v for v in views}
    sites = {v.urn: _SiteAcc(v) for v in views if v.type == SITE_TYPE}
    estate = next((v for v in views if v.type == ESTATE_TYPE), None)
    ingress: list[IngressRule] = []
    ssh: set[int] = set()
    sip: set[int] = set()
    for declared in sites.values():
        ssh |= _ints(declared.view.props.get("sshPorts"))
        sip |= _ints(declared.view.props.get("sipPorts"))
    for view in views:
        if view.type == SEC_RULE_TYPE:
            rule = _ingress(view)
            if rule is not None:
                ingress.append(rule)
            continue
        if view.type == LAB_INGRESS_TYPE:
            ingress.extend(_lab_ingress(view))
            continue
        site = _site_of(view, by_urn)
        acc = sites.get(site.urn) if site else None
        if acc is None:
            continue
        if view.type == INSTANCE_TYPE:
            acc.call_servers += 1
            if _has_hint_group(view.props):
                acc.hinted.append(view.dependencies)
        elif view.type == SERVER_GROUP_TYPE:
            acc.groups[view.urn] = _policy_of(view.props)
        elif view.type == LAB_SITE_TYPE:
            hosts = view.props.get("hosts")
            count = len(hosts) if _known(hosts) and isinstance(hosts, Sequence) else 0
            acc.call_servers += count
            acc.lab_hosts += count
            isolation = view.props.get("isolation")
            if _known(isolation):
                acc.lab_isolation = str(isolation)
    eprops = estate.props if estate else {}
    peak = eprops.get("peakCps")
    return EstateFacts(
        sites=tuple(_site_facts(acc) for acc in sites.values()),
        ingress=tuple(ingress), ssh_ports=frozenset(ssh), sip_ports=frozenset(sip),
        peak_cps=_int(peak) if _known(peak) else None,
        lab=bool(eprops.get("lab")) if _known(eprops.get("lab")) else False,
    )
