"""Pure address planning for the OpenStack substrate: one subnet per site.

The inventory fixes every call server's address; a site's subnet must hold them all,
and no two sites may share addresses (their security groups admit each other by subnet).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import Estate, Site

Network = IPv4Network | IPv6Network

# The smallest subnet derived for a site: room for the DHCP and router ports that
# OpenStack adds next to the call servers.
MIN_PREFIX = {4: 28, 6: 64}


def parse_network(cidr: str) -> Network:
    """A CIDR as a network object; host bits are tolerated (10.0.0.5/24 is 10.0.0.0/24)."""
    return ip_network(cidr, strict=False)


def host_network(address: IPv4Address | IPv6Address) -> Network:
    """The single-address network of `address` (/32 or /128), as a rule source."""
    return ip_network(address)


def derived_site_network(site: Site) -> Network:
    """The smallest subnet (at most /28, /64) that holds every host of the site."""
    versions = {h.address.version for h in site.hosts}
    if len(versions) != 1:
        raise InvalidInput(f"site {site.name}: hosts mix IPv4 and IPv6; set callfleet:siteCidrs "
                           "for it or give its hosts one address family")
    first = site.hosts[0].address
    prefix = MIN_PREFIX[first.version]
    while prefix >= 8:
        net = ip_network(f"{first}/{prefix}", strict=False)
        if all(h.address in net for h in site.hosts):
            return net
        prefix -= 1
    raise InvalidInput(f"site {site.name}: its hosts are too far apart for one subnet; "
                       "set callfleet:siteCidrs")


def site_networks(estate: Estate, *, overrides: Mapping[str, str]) -> dict[str, Network]:
    """Each site's subnet: the configured CIDR, else derived; checked to hold its hosts
    and not to overlap another site's."""
    unknown = sorted(set(overrides) - {s.name for s in estate.sites})
    if unknown:
        raise InvalidInput("stack config callfleet:siteCidrs names no site of the estate: "
                           f"{unknown[0]}")
    plan: dict[str, Network] = {}
    for site in estate.sites:
        net = parse_network(overrides[site.name]) if site.name in overrides \
            else derived_site_network(site)
        for host in site.hosts:
            if host.address not in net:
                raise InvalidInput(f"site {site.name}: host {host.name} ({host.address}) is not "
                                   f"in the site subnet {net}")
        for other, other_net in plan.items():
            if net.version == other_net.version and net.overlaps(other_net):
                raise InvalidInput(f"sites {other} and {site.name} would share addresses "
                                   f"({other_net} and {net}); set callfleet:siteCidrs")
        plan[site.name] = net
    return plan
