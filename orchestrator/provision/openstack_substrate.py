"""The OpenStack substrate: per site a network, a subnet, a security group, an
anti-affinity server group, and one port and instance per call server.

Security rules admit SIP only from the edge router and the estate's site subnets, and
SSH only from the management bastions. Whether those sources are acceptable (never the
whole Internet) is the policy pack's to judge, not this module's.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import pulumi

from orchestrator.estate.model import Estate, Host, Site
from orchestrator.provision.addressing import Network, host_network, parse_network, site_networks
from orchestrator.provision.components import SiteComponent, site_props
from orchestrator.provision.rules import ANTI_AFFINITY
from orchestrator.provision.stack_config import OpenStackSubstrate
from orchestrator.provision.stack_outputs import host_record

with warnings.catch_warnings():
    # The SDK warns at import about deprecated resources this program does not use.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_openstack as openstack

SIP_PROTOCOLS = ("udp", "tcp")


def sip_sources(*, estate: Estate, networks: Mapping[str, Network]) -> dict[str, Network]:
    """Where SIP may come from, by label: the edge router and every site subnet."""
    sources: dict[str, Network] = {}
    if estate.edge is not None:
        sources["edge"] = host_network(estate.edge.address)
    for site_name, net in networks.items():
        sources[f"site-{site_name}"] = net
    return sources


def _ethertype(net: Network) -> str:
    return "IPv4" if net.version == 4 else "IPv6"


def _providers(estate: Estate, settings: OpenStackSubstrate,
               parent: pulumi.Resource) -> dict[str, openstack.Provider]:
    # With placement=region every site region gets its own provider (same credentials,
    # another region's endpoints); with availability zones one provider serves all.
    if settings.placement != "region":
        return {}
    regions = sorted({s.region for s in estate.sites if s.region is not None})
    opts = pulumi.ResourceOptions(parent=parent)
    return {r: openstack.Provider(f"region-{r}", region=r, opts=opts) for r in regions}


def _security_rules(*, site: Site, group: openstack.networking.SecGroup,
                    settings: OpenStackSubstrate, sources: Mapping[str, Network],
                    opts: pulumi.ResourceOptions) -> None:
    for port in sorted({h.ssh_port for h in site.hosts}):
        for i, cidr in enumerate(settings.bastion_cidrs):
            net = parse_network(cidr)
            openstack.networking.SecGroupRule(
                f"{site.name}-ssh{port}-bastion{i}", direction="ingress", ethertype=_ethertype(net),
                protocol="tcp", port_range_min=port, port_range_max=port, remote_ip_prefix=str(net),
                security_group_id=group.id, description="SSH from the management bastion",
                opts=opts)
    for port in sorted({h.sip_port for h in site.hosts}):
        for proto in SIP_PROTOCOLS:
            for label, net in sources.items():
                openstack.networking.SecGroupRule(
                    f"{site.name}-sip{port}-{proto}-from-{label}", direction="ingress",
                    ethertype=_ethertype(net), protocol=proto, port_range_min=port,
                    port_range_max=port, remote_ip_prefix=str(net), security_group_id=group.id,
                    description=f"SIP from {label}", opts=opts)


def _call_server(*, host: Host, site: Site, settings: OpenStackSubstrate,
                 network: openstack.networking.Network, subnet: openstack.networking.Subnet,
                 group: openstack.networking.SecGroup, server_group: openstack.compute.ServerGroup,
                 opts: pulumi.ResourceOptions) -> openstack.networking.Port:
    port = openstack.networking.Port(
        f"{host.name}-port", network_id=network.id, admin_state_up=True,
        fixed_ips=[openstack.networking.PortFixedIpArgs(subnet_id=subnet.id,
                                                        ip_address=str(host.address))],
        security_group_ids=[group.id], opts=opts)
    openstack.compute.Instance(
        host.name, name=host.name, image_name=settings.image, flavor_name=settings.flavor,
        key_pair=settings.key_pair,
        availability_zone=site.region if settings.placement == "availability-zone" else None,
        networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
        scheduler_hints=[openstack.compute.InstanceSchedulerHintArgs(group=server_group.id)],
        metadata={"callfleet_site": site.name, "callfleet_release": host.release},
        opts=opts)
    return port


def _declare_site(*, site: Site, settings: OpenStackSubstrate, subnet_cidr: Network,
                  sources: Mapping[str, Network], component: SiteComponent,
                  provider: openstack.Provider | None) -> pulumi.Output[list[dict[str, Any]]]:
    opts = pulumi.ResourceOptions(parent=component, provider=provider)
    network = openstack.networking.Network(f"{site.name}-net", name=f"callfleet-{site.name}",
                                           admin_state_up=True, opts=opts)
    subnet = openstack.networking.Subnet(f"{site.name}-subnet", network_id=network.id,
                                         cidr=str(subnet_cidr), ip_version=subnet_cidr.version,
                                         opts=opts)
    if settings.router_id is not None:
        openstack.networking.RouterInterface(f"{site.name}-router-if", router_id=settings.router_id,
                                             subnet_id=subnet.id, opts=opts)
    group = openstack.networking.SecGroup(f"{site.name}-callservers", name=f"callfleet-{site.name}",
                                          description=f"call servers of site {site.name}",
                                          opts=opts)
    _security_rules(site=site, group=group, settings=settings, sources=sources, opts=opts)
    server_group = openstack.compute.ServerGroup(f"{site.name}-servers",
                                                 name=f"callfleet-{site.name}",
                                                 policies=ANTI_AFFINITY, opts=opts)
    ports = [_call_server(host=h, site=site, settings=settings, network=network, subnet=subnet,
                          group=group, server_group=server_group, opts=opts) for h in site.hosts]

    def records(fixed: list[list[str] | None]) -> list[dict[str, Any]]:
        # The address OpenStack assigned is the one the inventory gets.
        return [host_record(h, address=(ips[0] if ips else None))
                for h, ips in zip(site.hosts, fixed, strict=True)]

    return pulumi.Output.all(*[p.all_fixed_ips for p in ports]).apply(records)


def declare_openstack_sites(*, estate: Estate, settings: OpenStackSubstrate,
                            parent: pulumi.Resource) -> list[SiteComponent]:
    """One site component per site with its network, security and compute resources."""
    networks = site_networks(estate, overrides=settings.site_cidrs)
    sources = sip_sources(estate=estate, networks=networks)
    providers = _providers(estate, settings, parent)
    components = []
    for site in estate.sites:
        component = SiteComponent(site.name, props=site_props(site=site, substrate="openstack"),
                                  opts=pulumi.ResourceOptions(parent=parent))
        hosts = _declare_site(site=site, settings=settings, subnet_cidr=networks[site.name],
                              sources=sources, component=component,
                              provider=providers.get(site.region or ""))
        component.finish(hosts=hosts)
        components.append(component)
    return components
