"""Pure lab topology: which machine and address each lab component gets.

A lab is one /24 of the RFC 2544 benchmarking block (198.18.0.0/15), chosen by a base
such as 198.18.77, on one Linux bridge the lab creates (`cf18n77`):
  host side of the bridge   BASE.1     the orchestrator's probes send from here
  edge router (machine)     BASE.2     Kamailio dispatcher under systemd
  services (machine)        BASE.3     PSAP simulators (port 5070+k) and Prometheus (9090)
  call servers (machines)   BASE.4 ... site by site, host by host
  background caller         BASE.254   a second host-side address on the bridge
Machines have no default route: nothing they send can leave this computer. Several labs
(different bases) coexist. The edge and every call server serve Prometheus metrics on TCP
port 9101.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import EdgeRouter, EmergencyNumber, Estate, Host, ServiceKind, Site

STOCK_RELEASE = "5.6.0-lab1"
LAB_NUMBERS: tuple[tuple[str, str], ...] = (
    ("15", "SAMU (medical)"), ("17", "Police"), ("18", "Pompiers (fire)"), ("112", "European emergency"),
)
LAB_USER = "callfleet"       # the non-root SSH user with sudo every lab machine has
SIP_PORT = 5060
PSAP_PORT = 5070             # PSAP k answers on PSAP_PORT + k on the services machine
METRICS_PORT = 9101          # xhttp_prom on the edge and every call server (TCP, HTTP)
PROMETHEUS_PORT = 9090
SITE_CAPACITY_CPS = 300      # what -m 64 MB of shared memory serves (toolchain.md)
MAX_SITES = 12
MAX_HOSTS_PER_SITE = 8
EDGE_MACHINE = "edge"
SERVICES_MACHINE = "services"
FIRST_HOST_INDEX = 2         # machine index of the first call server (edge 0, services 1)
CALLER_OCTET = 254
MAX_BACKGROUND_FAILURE = 0.2
MAX_BACKGROUND_DELAY_MS = 500


@dataclass(frozen=True)
class LabParams:
    """What `callfleet lab up` was asked for."""

    sites: int = 6
    hosts_per_site: int = 2
    base: str = "198.18.77"
    # Background noise of a real network (every PSAP alike): calls rejected at random, and
    # a random answer delay. Not part of the lab's shape: `lab up` changes it in place.
    background_failure: float = 0.0
    background_delay_ms: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.sites <= MAX_SITES:
            raise InvalidInput(f"--sites: {self.sites} is out of range 1..{MAX_SITES}")
        if not 1 <= self.hosts_per_site <= MAX_HOSTS_PER_SITE:
            raise InvalidInput(f"--hosts-per-site: {self.hosts_per_site} is out of range 1..{MAX_HOSTS_PER_SITE}")
        if not 0 <= self.background_failure <= MAX_BACKGROUND_FAILURE:
            raise InvalidInput(f"--background-failure: {self.background_failure:g} is out of range "
                               f"0..{MAX_BACKGROUND_FAILURE:g} (a fraction of calls)")
        if not 0 <= self.background_delay_ms <= MAX_BACKGROUND_DELAY_MS:
            raise InvalidInput(f"--background-delay-ms: {self.background_delay_ms} is out of range "
                               f"0..{MAX_BACKGROUND_DELAY_MS}")
        m = re.fullmatch(r"198\.(18|19)\.(\d{1,3})", self.base)
        if not m or not 0 <= int(m.group(2)) <= 255:
            raise InvalidInput(f"--base: {self.base!r} must be 198.18.X or 198.19.X with X in 0..255 "
                               "(the RFC 2544 benchmarking block, one /24 per lab)")

    @property
    def network(self) -> IPv4Network:
        """The lab's /24."""
        return IPv4Network(f"{self.base}.0/24")

    @property
    def bridge(self) -> str:
        """The lab bridge's name: unique per base, short enough for nspawn's veth names."""
        _, second, third = self.base.split(".")
        return f"cf{second}n{third}"


def machine_names(p: LabParams) -> list[str]:
    """Every machine in boot order; the index is the address (network[2 + index])."""
    return [EDGE_MACHINE, SERVICES_MACHINE, *(h for s in range(1, p.sites + 1) for h in site_host_names(p, s))]


def site_host_names(p: LabParams, site_index: int) -> list[str]:
    """The call-server hostnames of the site_index-th (1-based) site."""
    return [f"{site_name(site_index)}-cs{h}" for h in range(1, p.hosts_per_site + 1)]


def _machine_address(p: LabParams, index: int) -> IPv4Address:
    return p.network[2 + index]


def edge_address(p: LabParams) -> IPv4Address:
    """The edge router's address."""
    return _machine_address(p, 0)


def services_address(p: LabParams) -> IPv4Address:
    """The services machine: PSAP simulators and Prometheus."""
    return _machine_address(p, 1)


def psap_port(index: int) -> int:
    """The port of the PSAP simulator answering the index-th emergency number."""
    return PSAP_PORT + index


def prometheus_url(p: LabParams) -> str:
    """The lab Prometheus server's base URL (the estate's metrics_url)."""
    return f"http://{services_address(p)}:{PROMETHEUS_PORT}"


def metrics_listen(address: IPv4Address | IPv6Address | str) -> str:
    """The Kamailio METRICS_LISTEN value for a component on `address`."""
    return f"tcp:{address}:{METRICS_PORT}"


def caller_address(p: LabParams) -> IPv4Address:
    """Where the background caller (the public) sends from: a host-side bridge address."""
    return p.network[CALLER_OCTET]


def probe_address(p: LabParams) -> IPv4Address:
    """Where synthetic probes send from: the bridge's host-side address."""
    return p.network[1]


def site_name(index: int) -> str:
    """Name of the index-th (1-based) lab site."""
    return f"site{index}"


def lab_estate(p: LabParams, machines_dir: Path) -> Estate:
    """The estate model of a lab with these parameters, all hosts on the stock release.

    Production-shaped: systemd hosts reached over SSH as LAB_USER with sudo, host keys
    pinned in the machines' known_hosts; only the values differ from a real inventory."""
    services = services_address(p)
    numbers = tuple(
        EmergencyNumber(number=num, label=label, probe_route=num, psap_uri=f"sip:{services}:{psap_port(k)}")
        for k, (num, label) in enumerate(LAB_NUMBERS)
    )
    names = machine_names(p)
    sites = []
    for s in range(1, p.sites + 1):
        name = site_name(s)
        hosts = tuple(
            Host(name=h, site=name, address=_machine_address(p, names.index(h)), ssh_port=22,
                 sip_port=SIP_PORT, release=STOCK_RELEASE)
            for h in site_host_names(p, s)
        )
        sites.append(Site(name=name, capacity_cps=SITE_CAPACITY_CPS, weight=100,
                          region=f"lab-zone-{s}", hosts=hosts))
    edge = EdgeRouter(address=edge_address(p), sip_port=SIP_PORT, ssh_port=22)
    return Estate(name="lab", sites=tuple(sites), numbers=numbers, edge=edge, ssh_user=LAB_USER, become=True,
                  service=ServiceKind.SYSTEMD, probe_source=probe_address(p), lab=True,
                  metrics_url=prometheus_url(p),
                  ssh_known_hosts=str(machines_dir / "ssh" / "known_hosts"),
                  ssh_private_key=str(machines_dir / "ssh" / "id_ed25519"))
