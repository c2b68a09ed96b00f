"""Estate model: frozen pydantic models, validated once, shared by every layer.

Ansible extra-vars, Pulumi config and testinfra expectations are all derived from
these objects; nothing downstream re-parses the inventory.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


def _address_text(value: object) -> object:
    """An address is written as text: YAML's `true` or `1` must not become 0.0.0.1."""
    if isinstance(value, bool | int | float):
        raise ValueError(f"an IP address is written as text, not {value!r}")
    return value


IpAddress = Annotated[IPv4Address | IPv6Address, BeforeValidator(_address_text)]
Digits = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{2,15}$")]
ReleaseVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")]
SipUri = Annotated[str, StringConstraints(pattern=r"^sips?:[^\s]+$")]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]


class ServiceKind(StrEnum):
    """How a call server is run on its host."""

    SYSTEMD = "systemd"  # kamailio.service with callfleet's drop-in (production and the lab)


class Frozen(BaseModel):
    """Base for every estate object: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EmergencyNumber(Frozen):
    """An emergency number the estate routes, and how a probe reaches it safely.

    `probe_route` is what a synthetic call dials: in production a test route that
    exercises the same routing and ends at a test answering point, never a live PSAP.
    """

    number: Digits
    label: str = Field(min_length=1, max_length=64)
    probe_route: Digits
    psap_uri: SipUri


class Host(Frozen):
    """One call-server host."""

    name: Name
    site: Name
    address: IpAddress
    ssh_port: int = Field(default=22, ge=1, le=65535)
    sip_port: int = Field(default=5060, ge=1, le=65535)
    release: ReleaseVersion
    root: str = Field(default="/opt/callserver", min_length=1)

    @property
    def sip_uri(self) -> str:
        """The dispatcher destination of this host."""
        return f"sip:{self.address}:{self.sip_port}"


class Site(Frozen):
    """A geo-redundant site: a group of call servers sharing a traffic weight."""

    name: Name
    capacity_cps: int = Field(gt=0, description="calls per second the site can carry")
    weight: int = Field(ge=0, le=100, description="relative share of emergency traffic")
    region: str | None = None
    hosts: tuple[Host, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _hosts_belong_here(self) -> Site:
        for host in self.hosts:
            if host.site != self.name:
                raise ValueError(f"host {host.name} says site {host.site}, listed under {self.name}")
        return self

    @property
    def releases(self) -> frozenset[str]:
        """The releases running on this site's hosts (one when the site is consistent)."""
        return frozenset(h.release for h in self.hosts)


class EdgeRouter(Frozen):
    """The router that spreads emergency calls over the sites by weight."""

    kind: Literal["kamailio-dispatcher"] = "kamailio-dispatcher"
    address: IpAddress = Field(description="where emergency calls enter (SIP)")
    sip_port: int = Field(default=5060, ge=1, le=65535)
    ssh_host: IpAddress | None = Field(
        default=None, description="management address callfleet reaches the edge host on (default: address)")
    ssh_port: int = Field(default=22, ge=1, le=65535)
    control_socket: str = Field(default="/run/kamailio/kamailio_ctl", pattern=r"^/[^\s]+$",
                                description="Kamailio's control socket, a path on the edge host")
    dispatcher_list: str = Field(default="/etc/kamailio/dispatcher.list", pattern=r"^/[^\s]+$",
                                 description="the dispatcher list file, a path on the edge host")


class Estate(Frozen):
    """The whole estate: sites, the emergency numbers, the edge."""

    name: Name
    sites: tuple[Site, ...] = Field(min_length=1)
    numbers: tuple[EmergencyNumber, ...] = Field(min_length=1)
    edge: EdgeRouter | None = None
    ssh_user: str = "root"
    become: bool = Field(default=False, description="host commands that need root go through sudo (ansible_become)")
    service: ServiceKind = ServiceKind.SYSTEMD
    ssh_known_hosts: str | None = Field(
        default=None, description="known_hosts file every SSH client must verify host keys against")
    ssh_private_key: str | None = None
    probe_source: IpAddress | None = Field(
        default=None, description="address synthetic calls are sent from (None: the system's choice)")
    lab: bool = False
    metrics_url: HttpUrl | None = Field(
        default=None, description="Prometheus server holding the estate's live metrics (HTTP API base URL)")

    @model_validator(mode="after")
    def _unique(self) -> Estate:
        seen_sites: set[str] = set()
        seen_hosts: dict[str, str] = {}
        seen_addr: dict[str, str] = {}
        for site in self.sites:
            if site.name in seen_sites:
                raise ValueError(f"site {site.name} appears twice")
            seen_sites.add(site.name)
            for host in site.hosts:
                if host.name in seen_hosts:
                    raise ValueError(f"host {host.name} is in {seen_hosts[host.name]} and {site.name}")
                seen_hosts[host.name] = site.name
                addr = str(host.address)
                if addr in seen_addr:
                    raise ValueError(f"address {addr} of {host.name} is already used by {seen_addr[addr]}")
                seen_addr[addr] = host.name
        numbers = [n.number for n in self.numbers]
        if len(set(numbers)) != len(numbers):
            raise ValueError("an emergency number is listed twice")
        return self

    @property
    def hosts(self) -> tuple[Host, ...]:
        """Every call-server host, site by site."""
        return tuple(h for s in self.sites for h in s.hosts)

    def site(self, name: str) -> Site:
        """The site called `name`; KeyError names the known sites."""
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(f"no site {name!r} (sites: {', '.join(s.name for s in self.sites)})")

    def host(self, name: str) -> Host:
        """The host called `name`."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r}")

    def number(self, number: str) -> EmergencyNumber:
        """The emergency number entry for `number`."""
        for n in self.numbers:
            if n.number == number:
                return n
        raise KeyError(f"no emergency number {number!r} (numbers: {', '.join(n.number for n in self.numbers)})")

    @property
    def peak_capacity_without_largest(self) -> int:
        """Calls/s the estate still carries when its largest site is out (N+1 check)."""
        caps = sorted(s.capacity_cps for s in self.sites)
        return sum(caps[:-1])
