"""The Pulumi program: the estate model in, one component per site out.

The estate comes from the model layer only: the lab's topology (lab_estate) for the lab
substrate, load_inventory for OpenStack. Nothing here parses an inventory by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from orchestrator.errors import CallfleetError, ToolMissing
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate
from orchestrator.lab.state import machines_dir
from orchestrator.lab.topology import lab_estate
from orchestrator.provision.components import EstateComponent, SiteComponent, estate_props
from orchestrator.provision.stack_config import (
    NAMESPACE,
    LabSubstrate,
    ProvisionConfig,
    find_project_dir,
    read_stack_config,
)
from orchestrator.provision.stack_outputs import (
    ESTATE_OUTPUT,
    PEAK_OUTPUT,
    SUBSTRATE_OUTPUT,
    provisioned_estate,
)

# Prefixed to the message of a configuration error raised in the program, so the
# Automation API adapter can tell "your stack config is wrong" (exit 2) from an engine
# or cloud failure (exit 4) in the structured diagnostics.
INVALID_INPUT_MARKER = "[callfleet:invalid-input]"


@dataclass(frozen=True)
class DeclaredEstate:
    """What the program declared: the components and the provisioned-estate output."""

    root: EstateComponent
    sites: tuple[SiteComponent, ...]
    estate: pulumi.Output[dict[str, Any]]


def estate_for(config: ProvisionConfig) -> Estate:
    """The estate model the stack declares, from the lab topology or the inventory."""
    substrate = config.substrate
    if isinstance(substrate, LabSubstrate):
        return lab_estate(substrate.params(), machines_dir(substrate.state_dir))
    return load_inventory(substrate.inventory)


def declare_estate(*, estate: Estate, config: ProvisionConfig) -> DeclaredEstate:
    """Declare the estate's resources on the configured substrate."""
    kind = config.substrate.kind
    root = EstateComponent(estate.name, props=estate_props(estate=estate, substrate=kind,
                                                            peak_cps=config.peak_cps))
    if isinstance(config.substrate, LabSubstrate):
        from orchestrator.provision.lab_substrate import declare_lab_sites

        sites = declare_lab_sites(estate=estate, settings=config.substrate, parent=root)
    else:
        # Imported only for OpenStack stacks: the lab never needs the provider SDK loaded.
        try:
            from orchestrator.provision.openstack_substrate import declare_openstack_sites
        except ModuleNotFoundError as exc:
            raise ToolMissing(f"the OpenStack substrate needs {exc.name}: pip install 'callfleet[openstack]'"
                              ) from None

        sites = declare_openstack_sites(estate=estate, settings=config.substrate, parent=root)
    provisioned = pulumi.Output.all(*[s.provisioned_hosts for s in sites]).apply(
        lambda hosts: provisioned_estate(estate=estate, hosts=hosts))
    root.finish(estate=provisioned)
    return DeclaredEstate(root=root, sites=tuple(sites), estate=provisioned)


def main(project_dir: Path | None = None) -> None:
    """The program: run inline by the Automation API adapter (with the project directory),
    or by a language host from Pulumi.yaml (orchestrator/provision/__main__.py)."""
    cfg = pulumi.Config(NAMESPACE)
    try:
        config = read_stack_config(get=cfg.get, get_object=cfg.get_object,
                                   project_dir=project_dir or find_project_dir(start=Path.cwd()))
        estate = estate_for(config)
    except CallfleetError as exc:
        # RunError: Pulumi prints the message without a Python traceback.
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        raise pulumi.RunError(f"{INVALID_INPUT_MARKER} {exc.message}{hint}") from None
    declared = declare_estate(estate=estate, config=config)
    pulumi.export(ESTATE_OUTPUT, declared.estate)
    pulumi.export(SUBSTRATE_OUTPUT, config.substrate.kind)
    pulumi.export(PEAK_OUTPUT, config.peak_cps)
