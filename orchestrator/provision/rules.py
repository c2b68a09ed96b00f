"""The estate invariants the CrossGuard policy pack enforces, as pure functions.

Each rule takes the facts of a stack (EstateFacts, see `facts` for how they are read from
the resources Pulumi hands a stack policy) and returns its violations as messages; an
empty list means the rule holds. No Pulumi import here: the rules are tested as plain
functions and the pack in policies/crossguard only wraps them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_network

from pydantic import BaseModel, ConfigDict, Field

REQUIRED_SITES = 6
MIN_CALL_SERVERS = 2
ANTI_AFFINITY = "anti-affinity"
LAB_ISOLATION = "process"
WORLD = (ip_network("0.0.0.0/0"), ip_network("::/0"))
# Ports protected even when no site declares them: the defaults of SSH and SIP (and SIP/TLS).
DEFAULT_SSH_PORTS = frozenset({22})
DEFAULT_SIP_PORTS = frozenset({5060, 5061})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteFacts(_Frozen):
    """What a stack says about one site."""

    name: str
    zone: str | None = None
    capacity_cps: int = Field(ge=0)
    call_servers: int = Field(ge=0, description="call-server instances (or lab hosts) created")
    placement: str | None = Field(default=None, description="policy of the site's placement group")
    placed: int = Field(default=0, ge=0, description="call servers bound to that placement group")


class IngressRule(_Frozen):
    """One ingress security rule, wherever it is in the stack."""

    resource: str
    protocol: str | None = Field(default=None, description="tcp, udp, ... or None for any")
    port_min: int | None = None
    port_max: int | None = None
    remote: str | None = Field(default=None, description="remote CIDR; None with no remote group = any")
    remote_group: bool = False


class EstateFacts(_Frozen):
    """Everything the rules judge, substrate-neutral."""

    sites: tuple[SiteFacts, ...] = ()
    ingress: tuple[IngressRule, ...] = ()
    ssh_ports: frozenset[int] = frozenset()
    sip_ports: frozenset[int] = frozenset()
    peak_cps: int | None = None
    lab: bool = False


def exactly_six_sites(facts: EstateFacts) -> list[str]:
    """The estate has exactly six sites."""
    if len(facts.sites) == REQUIRED_SITES:
        return []
    names = ", ".join(s.name for s in facts.sites) or "none"
    return [f"the estate has {len(facts.sites)} sites ({names}); it must have exactly {REQUIRED_SITES}"]


def two_call_servers_per_site(facts: EstateFacts) -> list[str]:
    """Every site runs at least two call servers, so one can be drained or lost."""
    return [f"site {s.name} has {s.call_servers} call server(s); at least {MIN_CALL_SERVERS} are required"
            for s in facts.sites if s.call_servers < MIN_CALL_SERVERS]


def anti_affinity_per_site(facts: EstateFacts) -> list[str]:
    """Every call server of a site sits in a hard anti-affinity group of that site.

    Soft anti-affinity lets the scheduler co-locate a site's servers, so it does not count.
    In the lab, whose failure domain is the process, process isolation is accepted.
    """
    accepted = {ANTI_AFFINITY, LAB_ISOLATION} if facts.lab else {ANTI_AFFINITY}
    out = []
    for s in facts.sites:
        if s.placement not in accepted:
            out.append(f"site {s.name} has no {ANTI_AFFINITY} placement group "
                       f"(found: {s.placement or 'none'})")
        elif s.placed < s.call_servers:
            out.append(f"site {s.name}: only {s.placed} of its {s.call_servers} call servers are in "
                       f"its {ANTI_AFFINITY} group")
    return out


def _covers(rule: IngressRule, ports: frozenset[int]) -> list[int]:
    if rule.protocol not in (None, "tcp", "udp", "sctp"):
        return []  # icmp and the like carry no SSH or SIP
    low = rule.port_min if rule.port_min is not None else 1
    high = rule.port_max if rule.port_max is not None else 65535
    return sorted(p for p in ports if low <= p <= high)


def _world_open(rule: IngressRule) -> bool:
    if rule.remote is None:
        return not rule.remote_group  # OpenStack: no remote at all admits everyone
    try:
        net = ip_network(rule.remote, strict=False)
    except ValueError:
        return False
    return net in WORLD


def no_world_open_ssh_or_sip(facts: EstateFacts) -> list[str]:
    """No ingress rule admits SSH or SIP from 0.0.0.0/0 or ::/0 (or from anywhere)."""
    ssh = facts.ssh_ports | DEFAULT_SSH_PORTS
    sip = facts.sip_ports | DEFAULT_SIP_PORTS
    out = []
    for rule in facts.ingress:
        if not _world_open(rule):
            continue
        exposed = [f"SSH port {p}" for p in _covers(rule, ssh)] + [f"SIP port {p}" for p in _covers(rule, sip)]
        if exposed:
            source = rule.remote or "anywhere"
            out.append(f"{rule.resource} admits {', '.join(exposed)} from {source}")
    return out


def distinct_zones(facts: EstateFacts) -> list[str]:
    """Every site names its availability zone or region, and no two sites share one."""
    out = [f"site {s.name} names no availability zone or region" for s in facts.sites if not s.zone]
    by_zone: dict[str, list[str]] = {}
    for s in facts.sites:
        if s.zone:
            by_zone.setdefault(s.zone, []).append(s.name)
    out += [f"sites {', '.join(names)} share zone {zone}" for zone, names in by_zone.items() if len(names) > 1]
    return out


def n_plus_one_capacity(facts: EstateFacts) -> list[str]:
    """Without its largest site the estate still carries the declared peak."""
    if facts.peak_cps is None:
        return ["no declared peak: set stack config callfleet:peakCps (calls/s the estate must carry)"]
    caps = sorted(s.capacity_cps for s in facts.sites)
    remaining = sum(caps[:-1])
    if remaining >= facts.peak_cps:
        return []
    return [f"without its largest site the estate carries {remaining} calls/s, less than the declared "
            f"peak of {facts.peak_cps}"]


@dataclass(frozen=True)
class Rule:
    """A named rule, as the policy pack publishes it."""

    name: str
    description: str
    check: Callable[[EstateFacts], list[str]]


RULES: tuple[Rule, ...] = (
    Rule("exactly-six-sites", "The estate has exactly six sites.", exactly_six_sites),
    Rule("two-call-servers-per-site", "Every site runs at least two call servers.", two_call_servers_per_site),
    Rule("anti-affinity-per-site", "The call servers of a site are spread by a hard anti-affinity group.",
         anti_affinity_per_site),
    Rule("no-world-open-ssh-sip", "No SSH or SIP ingress from 0.0.0.0/0 or ::/0.", no_world_open_ssh_or_sip),
    Rule("distinct-zones", "Sites are spread over distinct availability zones or regions.", distinct_zones),
    Rule("n-plus-one-capacity", "The sites minus the largest carry the declared peak.", n_plus_one_capacity),
)


def evaluate(facts: EstateFacts) -> dict[str, list[str]]:
    """Every rule's violations, by rule name (only the rules that are violated)."""
    results = {rule.name: rule.check(facts) for rule in RULES}
    return {name: found for name, found in results.items() if found}
