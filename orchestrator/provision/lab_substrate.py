"""The lab substrate: a Pulumi dynamic provider that brings lab sites up and down.

Create and delete call the same code as `callfleet lab` (orchestrator.lab.control), so a
lab stack brings the whole lab into being from nothing: one `LabNetwork` (the bridge, the
edge and services machines and every call-server machine with the stock release: `lab up`)
and one `LabSite` per site depending on it (its call-server machines, started on their kept
disks or powered off), each with a `LabSshIngress` (the sources its call servers admit SSH
from, enforced by their sshd). Destroy deletes the rules and sites first, then the network
(`lab down`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi import dynamic

from orchestrator.estate.model import Estate
from orchestrator.provision.components import SiteComponent, site_props
from orchestrator.provision.rules import LAB_ISOLATION
from orchestrator.provision.stack_config import LabSubstrate
from orchestrator.provision.stack_outputs import host_record

# In the lab a site's failure domain is the machine: every call server is its own
# systemd-nspawn machine, all on one computer. The anti-affinity policy accepts this
# placement (rules.LAB_ISOLATION) for lab estates only.
# A change to any of these means another site: replace rather than update in place.
_REPLACE_ON = ("site", "stateDir", "hosts")


def lab_site_outputs(props: dict[str, Any]) -> dict[str, Any]:
    """What a created lab site reports: its identity, its hosts and their isolation."""
    return {
        "site": props["site"],
        "stateDir": props["stateDir"],
        "hosts": [dict(h) for h in props["hosts"]],
        "isolation": LAB_ISOLATION,
    }


def lab_site_id(props: dict[str, Any]) -> str:
    """The physical id of a lab site: its state directory and name."""
    return f"{props['stateDir']}#{props['site']}"


_NETWORK_REPLACE_ON = ("stateDir", "sites", "hostsPerSite", "base")


class LabNetworkProvider(dynamic.ResourceProvider):
    """The lab's shared parts through `callfleet lab up` / `lab down`."""

    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        """`lab up` of the stack's shape (harmless when the lab already runs)."""
        from orchestrator.lab.control import lab_up
        from orchestrator.lab.topology import LabParams

        lab_up(state_dir=Path(props["stateDir"]),
               params=LabParams(sites=int(props["sites"]), hosts_per_site=int(props["hostsPerSite"]),
                                base=str(props["base"])))
        return dynamic.CreateResult(id_=str(props["stateDir"]), outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """`lab down`: every machine, the bridge and the addresses go."""
        from orchestrator.lab.control import lab_down

        lab_down(state_dir=Path(props["stateDir"]))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        """Another shape or place is another lab: replace it."""
        replaces = [k for k in _NETWORK_REPLACE_ON if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)


class LabNetwork(dynamic.Resource, module="callfleet", name="LabNetwork"):
    """The lab's bridge and machines, managed by LabNetworkProvider."""

    def __init__(self, name: str, *, settings: LabSubstrate, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"stateDir": str(settings.state_dir), "sites": settings.sites,
                 "hostsPerSite": settings.hosts_per_site, "base": settings.base}
        super().__init__(LabNetworkProvider(), name, props, opts)


class LabSiteProvider(dynamic.ResourceProvider):
    """CRUD of one lab site through orchestrator.lab.control."""

    # Nothing secret is captured by this provider; keep its state readable.
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        """Start the site's call-server machines (the LabNetwork it depends on brought the lab up)."""
        # Imported here: the provider runs in the engine's provider process, and the lab
        # module is only needed when a site really changes (never under mocks).
        from orchestrator.lab.control import site_up

        site_up(state_dir=Path(props["stateDir"]), site=str(props["site"]))
        return dynamic.CreateResult(id_=lab_site_id(props), outs=lab_site_outputs(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Power the site's call-server machines off."""
        from orchestrator.lab.control import site_down

        site_down(state_dir=Path(props["stateDir"]), site=str(props["site"]))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        """Replace the site when its name, state directory or hosts change."""
        replaces = [k for k in _REPLACE_ON if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(replaces), replaces=replaces,
                                  delete_before_replace=True)


class LabSite(dynamic.Resource, module="callfleet", name="LabSite"):
    """One lab site managed by LabSiteProvider."""

    hosts: pulumi.Output[list[dict[str, Any]]]
    isolation: pulumi.Output[str]

    def __init__(self, name: str, *, state_dir: Path, site: str, hosts: list[dict[str, Any]],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        # isolation is an input too: a preview's policies see the inputs of what it would create.
        props = {"site": site, "stateDir": str(state_dir), "hosts": hosts, "isolation": LAB_ISOLATION}
        super().__init__(LabSiteProvider(), name, props, opts)


# An SSH ingress rule in the shape of an OpenStack security-group rule, so the policy pack
# reads both alike; one resource per site carries every admitted source network.
SSH_PORT = 22


def lab_ingress_props(*, state_dir: Path, site: str, cidrs: tuple[str, ...]) -> dict[str, Any]:
    """The inputs of a site's LabSshIngress."""
    return {"site": site, "stateDir": str(state_dir), "direction": "ingress", "protocol": "tcp",
            "portRangeMin": SSH_PORT, "portRangeMax": SSH_PORT, "remoteIpPrefixes": list(cidrs)}


class LabSshIngressProvider(dynamic.ResourceProvider):
    """Applies a site's SSH ingress on its call servers' sshd (orchestrator.lab.ingress)."""

    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        """Admit SSH from the rule's networks only, on every call server of the site."""
        from orchestrator.lab.ingress import apply_ssh_ingress

        apply_ssh_ingress(state_dir=Path(props["stateDir"]), site=str(props["site"]),
                          cidrs=[str(c) for c in props["remoteIpPrefixes"]])
        return dynamic.CreateResult(id_=f"{lab_site_id(props)}#ssh", outs=dict(props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        """Other networks: the drop-in is rewritten in place."""
        from orchestrator.lab.ingress import apply_ssh_ingress

        apply_ssh_ingress(state_dir=Path(news["stateDir"]), site=str(news["site"]),
                          cidrs=[str(c) for c in news["remoteIpPrefixes"]])
        return dynamic.UpdateResult(outs=dict(news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Take the rule off (sshd falls back to admitting any source)."""
        from orchestrator.lab.ingress import remove_ssh_ingress

        remove_ssh_ingress(state_dir=Path(props["stateDir"]), site=str(props["site"]))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        """Another site or lab is another rule; other networks an update."""
        replaces = [k for k in ("site", "stateDir") if olds.get(k) != news.get(k)]
        changed = bool(replaces) or olds.get("remoteIpPrefixes") != news.get("remoteIpPrefixes")
        return dynamic.DiffResult(changes=changed, replaces=replaces, delete_before_replace=True)


class LabSshIngress(dynamic.Resource, module="callfleet", name="LabSshIngress"):
    """A site's SSH ingress rule, managed by LabSshIngressProvider."""

    def __init__(self, name: str, *, state_dir: Path, site: str, cidrs: tuple[str, ...],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(LabSshIngressProvider(), name,
                         lab_ingress_props(state_dir=state_dir, site=site, cidrs=cidrs), opts)


def declare_lab_sites(*, estate: Estate, settings: LabSubstrate,
                      parent: pulumi.Resource) -> list[SiteComponent]:
    """The lab network, then one site component per lab site, each owning one LabSite
    resource that depends on the network (created after it, deleted before it)."""
    network = LabNetwork(f"{estate.name}-lab-network", settings=settings, opts=pulumi.ResourceOptions(parent=parent))
    components = []
    for site in estate.sites:
        component = SiteComponent(site.name, props=site_props(site=site, substrate="lab"),
                                  opts=pulumi.ResourceOptions(parent=parent))
        lab_site = LabSite(f"{site.name}-lab", state_dir=settings.state_dir, site=site.name,
                           hosts=[host_record(h) for h in site.hosts],
                           opts=pulumi.ResourceOptions.merge(component.child_opts,
                                                             pulumi.ResourceOptions(depends_on=[network])))
        LabSshIngress(f"{site.name}-lab-ssh", state_dir=settings.state_dir, site=site.name,
                      cidrs=settings.ssh_sources(),
                      opts=pulumi.ResourceOptions.merge(component.child_opts,
                                                        pulumi.ResourceOptions(depends_on=[lab_site])))
        component.finish(hosts=lab_site.hosts)
        components.append(component)
    return components
