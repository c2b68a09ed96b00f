"""The substrate-neutral components: one for the estate, one per site.

Their properties are the declared facts the CrossGuard policies read (site name, zone,
capacity, SSH/SIP ports, declared peak); what was actually created (instances, server
groups, security rules, lab sites) the policies read from the child resources.
"""

from __future__ import annotations

from typing import Any

import pulumi

from orchestrator.estate.model import Estate, Site

ESTATE_TYPE = "callfleet:estate:Estate"
SITE_TYPE = "callfleet:estate:Site"


def estate_props(*, estate: Estate, substrate: str, peak_cps: int | None) -> dict[str, Any]:
    """The estate component's properties (what the N+1 policy reads)."""
    return {"estateName": estate.name, "substrate": substrate, "lab": estate.lab,
            "peakCps": peak_cps, "siteCount": len(estate.sites)}


def site_props(*, site: Site, substrate: str) -> dict[str, Any]:
    """A site component's properties: declared capacity, zone and the ports to protect."""
    return {
        "siteName": site.name,
        "substrate": substrate,
        "zone": site.region,
        "capacityCps": site.capacity_cps,
        "weight": site.weight,
        "declaredHosts": len(site.hosts),
        "sshPorts": sorted({h.ssh_port for h in site.hosts}),
        "sipPorts": sorted({h.sip_port for h in site.hosts}),
    }


class EstateComponent(pulumi.ComponentResource):
    """The whole estate; every site component is its child."""

    def __init__(self, name: str, *, props: dict[str, Any],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ESTATE_TYPE, name, props, opts)
        self.declared = props

    def finish(self, *, estate: pulumi.Output[dict[str, Any]]) -> None:
        """Record the provisioned estate as this component's output."""
        # The declared props are registered as outputs too: the engine hands stack
        # policies a component's outputs, so the facts must be there.
        self.register_outputs({**self.declared, "estate": estate})


class SiteComponent(pulumi.ComponentResource):
    """One site: the substrate adds its resources as children, then calls `finish`."""

    def __init__(self, name: str, *, props: dict[str, Any],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(SITE_TYPE, name, props, opts)
        self.declared = props
        self.child_opts = pulumi.ResourceOptions(parent=self)

    def finish(self, *, hosts: pulumi.Output[list[dict[str, Any]]]) -> None:
        """Record the provisioned hosts (as the substrate reports them) as outputs."""
        self.provisioned_hosts = hosts
        self.register_outputs({**self.declared, "hosts": hosts})
