"""Pure lab topology: which loopback address each lab component gets.

Address plan inside 127.0.0.0/8, from a two-octet base such as 127.77:
  edge router          BASE.0.1
  Prometheus           BASE.0.9        (port 9090)
  site s, host h       BASE.s.h        (s = 1..N, h = 1..M)
  PSAP for number k    BASE.250.(k+1)
  background caller    BASE.251.1
  probes               BASE.252.x
Every address listens on its own ports, so several labs (different bases) can coexist.
The edge and every call server also serve Prometheus metrics on TCP port 9101.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import EdgeRouter, EmergencyNumber, Estate, Host, Site

STOCK_RELEASE = "5.6.0-lab1"
LAB_NUMBERS: tuple[tuple[str, str], ...] = (
    ("15", "SAMU (medical)"), ("17", "Police"), ("18", "Pompiers (fire)"), ("112", "European emergency"),
)
SSH_PORT = 2222
SIP_PORT = 5060
METRICS_PORT = 9101  # xhttp_prom on the edge and every call server (TCP, HTTP)
PROMETHEUS_PORT = 9090
SITE_CAPACITY_CPS = 300  # what -m 64 MB of shared memory serves (toolchain.md)
MAX_SITES = 12
MAX_HOSTS_PER_SITE = 8


@dataclass(frozen=True)
class LabParams:
    """What `callfleet lab up` was asked for."""

    sites: int = 6
    hosts_per_site: int = 2
    base: str = "127.77"

    def __post_init__(self) -> None:
        if not 1 <= self.sites <= MAX_SITES:
            raise InvalidInput(f"--sites: {self.sites} is out of range 1..{MAX_SITES}")
        if not 1 <= self.hosts_per_site <= MAX_HOSTS_PER_SITE:
            raise InvalidInput(f"--hosts-per-site: {self.hosts_per_site} is out of range 1..{MAX_HOSTS_PER_SITE}")
        m = re.fullmatch(r"127\.(\d{1,3})", self.base)
        if not m or not 1 <= int(m.group(1)) <= 254:
            raise InvalidInput(f"--base: {self.base!r} must be 127.X with X in 1..254 (loopback only)")


def edge_address(p: LabParams) -> IPv4Address:
    """The edge router's address."""
    return IPv4Address(f"{p.base}.0.1")


def psap_address(p: LabParams, index: int) -> IPv4Address:
    """The PSAP simulator answering the index-th emergency number."""
    return IPv4Address(f"{p.base}.250.{index + 1}")


def prometheus_address(p: LabParams) -> IPv4Address:
    """Where the lab's Prometheus server listens (port PROMETHEUS_PORT)."""
    return IPv4Address(f"{p.base}.0.9")


def prometheus_url(p: LabParams) -> str:
    """The lab Prometheus server's base URL (the estate's metrics_url)."""
    return f"http://{prometheus_address(p)}:{PROMETHEUS_PORT}"


def metrics_listen(address: IPv4Address | IPv6Address | str) -> str:
    """The Kamailio METRICS_LISTEN value for a component on `address`."""
    return f"tcp:{address}:{METRICS_PORT}"


def caller_address(p: LabParams) -> IPv4Address:
    """Where the background caller (the public) sends from."""
    return IPv4Address(f"{p.base}.251.1")


def probe_address(p: LabParams) -> IPv4Address:
    """Where synthetic probes send from."""
    return IPv4Address(f"{p.base}.252.1")


def site_name(index: int) -> str:
    """Name of the index-th (1-based) lab site."""
    return f"site{index}"


def host_root(state_dir: Path, host_name: str) -> Path:
    """The directory a lab host treats as its root (releases/, current, run/, log/)."""
    return state_dir / "hosts" / host_name


def lab_estate(p: LabParams, state_dir: Path) -> Estate:
    """The estate model of a lab with these parameters, all hosts on the stock release."""
    numbers = tuple(
        EmergencyNumber(number=num, label=label, probe_route=num,
                        psap_uri=f"sip:{psap_address(p, k)}:{SIP_PORT}")
        for k, (num, label) in enumerate(LAB_NUMBERS)
    )
    sites = []
    for s in range(1, p.sites + 1):
        name = site_name(s)
        hosts = tuple(
            Host(name=f"{name}-cs{h}", site=name, address=IPv4Address(f"{p.base}.{s}.{h}"),
                 ssh_port=SSH_PORT, sip_port=SIP_PORT, release=STOCK_RELEASE,
                 root=str(host_root(state_dir, f"{name}-cs{h}")))
            for h in range(1, p.hosts_per_site + 1)
        )
        sites.append(Site(name=name, capacity_cps=SITE_CAPACITY_CPS, weight=100,
                          region=f"lab-zone-{s}", hosts=hosts))
    edge = EdgeRouter(address=edge_address(p), sip_port=SIP_PORT,
                      control_socket=str(state_dir / "edge" / "ctl.sock"),
                      dispatcher_list=str(state_dir / "edge" / "dispatcher.list"))
    return Estate(name="lab", sites=tuple(sites), numbers=numbers, edge=edge, ssh_user=getpass.getuser(),
                  probe_source=probe_address(p), lab=True, metrics_url=prometheus_url(p),
                  ssh_known_hosts=str(state_dir / "ssh" / "known_hosts"),
                  ssh_private_key=str(state_dir / "ssh" / "id_ed25519"))
