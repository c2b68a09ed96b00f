"""The stack configuration the Pulumi program reads (namespace `callfleet:`), as a model.

Keys (all under the `callfleet:` namespace, set with `pulumi config set`):

  substrate          lab | openstack                      (required)
  peakCps            declared peak calls/s (the N+1 policy needs it)
  lab substrate:
    labStateDir      the lab state directory (default: the one `callfleet lab up` uses)
    labSites         number of sites (6)        labHostsPerSite  hosts per site (2)
    labBase          lab base, 198.18.X (198.18.77): one /24 of the RFC 2544 block
    bastionCidrs     list of CIDRs SSH is admitted from (default: the lab network); each
                     call server's sshd enforces it, and it must include the orchestrator
  openstack substrate:
    inventory        the inventory declaring the estate (required; relative to the project)
    image, flavor    Glance image and Nova flavor of the call servers (required)
    keyPair          Nova key pair for SSH (optional)
    bastionCidrs     list of CIDRs of the management bastions (SSH source; required)
    placement        availability-zone (default) | region: what a site's `region` names
    siteCidrs        map site -> subnet CIDR (default: derived from the hosts' addresses)
    routerId         an existing router to attach every site subnet to (optional)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.errors import InvalidInput
from orchestrator.lab.topology import LabParams

NAMESPACE = "callfleet"
PROJECT_FILE = "Pulumi.yaml"

# Python field name -> stack config key, so errors name the key the user typed.
_KEYS: dict[str, str] = {
    "substrate": "substrate", "peak_cps": "peakCps",
    "state_dir": "labStateDir", "sites": "labSites", "hosts_per_site": "labHostsPerSite",
    "base": "labBase",
    "inventory": "inventory", "image": "image", "flavor": "flavor", "key_pair": "keyPair",
    "bastion_cidrs": "bastionCidrs", "placement": "placement", "site_cidrs": "siteCidrs",
    "router_id": "routerId",
}
SCALAR_KEYS = ("substrate", "peakCps", "labStateDir", "labSites", "labHostsPerSite", "labBase",
               "inventory", "image", "flavor", "keyPair", "placement", "routerId")
OBJECT_KEYS = ("bastionCidrs", "siteCidrs")


def default_lab_dir() -> Path:
    """The lab state directory `callfleet lab up` uses unless told otherwise."""
    # Same rule as orchestrator.cli.common.DEFAULT_LAB_DIR; not imported from there so the
    # Pulumi program does not depend on the CLI layer.
    return Path(os.environ.get("CALLFLEET_LAB_DIR", f"/tmp/callfleet-lab-{os.getuid()}"))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LabSubstrate(_Frozen):
    """The lab on loopback: each site is brought up and down through the lab code."""

    kind: Literal["lab"] = "lab"
    state_dir: Path
    sites: int = 6
    hosts_per_site: int = 2
    base: str = "198.18.77"
    bastion_cidrs: tuple[Cidr, ...] = ()

    @field_validator("bastion_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # As for OpenStack: normalised here, judged by the policy pack (world-open SSH).
        return tuple(str(_network(v)) for v in value)

    def params(self) -> LabParams:
        """The lab parameters (validated by LabParams itself)."""
        return LabParams(sites=self.sites, hosts_per_site=self.hosts_per_site, base=self.base)

    def ssh_sources(self) -> tuple[str, ...]:
        """The networks SSH is admitted from: the configured ones, else the lab network."""
        return self.bastion_cidrs or (str(self.params().network),)


Cidr = Annotated[str, Field(min_length=1)]


class OpenStackSubstrate(_Frozen):
    """A telco OpenStack cloud: networks, security groups, server groups and instances."""

    kind: Literal["openstack"] = "openstack"
    inventory: Path
    image: str = Field(min_length=1)
    flavor: str = Field(min_length=1)
    key_pair: str | None = None
    bastion_cidrs: tuple[Cidr, ...] = Field(min_length=1)
    placement: Literal["availability-zone", "region"] = "availability-zone"
    site_cidrs: dict[str, Cidr] = Field(default_factory=dict)
    router_id: str | None = None

    @field_validator("bastion_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Normalised but not judged: a world-open bastion is the policy pack's to refuse,
        # so that one place (CrossGuard) enforces the rule for every stack.
        return tuple(str(_network(v)) for v in value)

    @field_validator("site_cidrs")
    @classmethod
    def _site_networks(cls, value: dict[str, str]) -> dict[str, str]:
        return {site: str(_network(cidr)) for site, cidr in value.items()}


def _network(value: str) -> IPv4Network | IPv6Network:
    try:
        return ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR") from None


class ProvisionConfig(_Frozen):
    """Everything the program needs besides the estate itself."""

    substrate: Annotated[LabSubstrate | OpenStackSubstrate, Field(discriminator="kind")]
    peak_cps: int | None = Field(default=None, gt=0)


def config_from_values(values: Mapping[str, Any], *, project_dir: Path) -> ProvisionConfig:
    """Build the config from stack config values keyed by their short names (`labSites`).

    Relative paths are taken relative to the project directory (where Pulumi.yaml is), so
    the program reads the same files whatever directory the engine starts it in.
    """
    kind = values.get("substrate")
    if kind is None:
        raise InvalidInput(f"stack config {NAMESPACE}:substrate is not set",
                           hint=f"pulumi config set {NAMESPACE}:substrate lab  (or openstack)")
    fields = {name: values[key] for name, key in _KEYS.items() if key in values}
    substrate = {k: v for k, v in fields.items() if k not in ("substrate", "peak_cps")}
    substrate["kind"] = kind
    if kind == "lab":
        substrate.setdefault("state_dir", default_lab_dir())
    for name in ("state_dir", "inventory"):
        if name in substrate:
            path = Path(substrate[name]).expanduser()
            substrate[name] = path if path.is_absolute() else project_dir / path
    try:
        config = ProvisionConfig.model_validate(
            {"substrate": substrate, **({"peak_cps": fields["peak_cps"]} if "peak_cps" in fields else {})})
    except ValidationError as exc:
        raise _config_error(exc) from None
    if isinstance(config.substrate, LabSubstrate):
        try:
            config.substrate.params()  # LabParams owns the ranges; only the wording changes
        except InvalidInput as exc:
            message = exc.message
            for flag, key in (("--hosts-per-site", "labHostsPerSite"), ("--sites", "labSites"),
                              ("--base", "labBase")):
                message = message.replace(flag, f"stack config {NAMESPACE}:{key}")
            raise InvalidInput(message) from None
        _check_lab_ssh_sources(config.substrate)
    return config


def _check_lab_ssh_sources(lab: LabSubstrate) -> None:
    from orchestrator.lab.ingress import check_keeps_orchestrator

    try:
        check_keeps_orchestrator(lab.ssh_sources(), lab.params())
    except InvalidInput as exc:
        raise InvalidInput(f"stack config {NAMESPACE}:bastionCidrs: {exc.message}", hint=exc.hint) from None


def _config_error(exc: ValidationError) -> InvalidInput:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if str(p) not in ("substrate", "lab", "openstack")]
    field = loc[0] if loc else "substrate"
    key = _KEYS.get(field, field)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "is not used by this substrate"
    elif err["type"] == "union_tag_invalid":
        msg = "must be lab or openstack"
    return InvalidInput(f"stack config {NAMESPACE}:{key}: {msg}", hint="see docs/PROVISIONING.md")


def read_stack_config(*, get: Callable[[str], str | None], get_object: Callable[[str], Any],
                      project_dir: Path) -> ProvisionConfig:
    """Read the config through getters (pulumi.Config.get / get_object in the program)."""
    values: dict[str, Any] = {}
    for key in SCALAR_KEYS:
        scalar = get(key)
        if scalar is not None:
            values[key] = scalar
    for key in OBJECT_KEYS:
        obj = get_object(key)
        if obj is not None:
            values[key] = obj
    return config_from_values(values, project_dir=project_dir)


def find_project_dir(*, start: Path) -> Path:
    """The nearest directory at or above `start` holding Pulumi.yaml (else `start`)."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    return start
