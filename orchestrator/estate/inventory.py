"""Read and write the estate as an Ansible YAML inventory.

Layout (sites are the child groups of the `callservers` group):

    all:
      vars:   estate_name, emergency_numbers, edge_router, ansible_user, ...
      children:
        callservers:
          vars: (optional defaults for every call server)
          children:
            <site>:
              vars:  site_capacity_cps, site_weight, site_region
              hosts:
                <host>: {ansible_host, ansible_port, callserver_release, callserver_root}

Errors name the file and the dotted key, on one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import EdgeRouter, EmergencyNumber, Estate, Host, Site

SITES_GROUP = "callservers"


class _Vars(BaseModel):
    # Ansible's own connection variables (ansible_*) are allowed anywhere; everything
    # else must be a key callfleet knows, so a typo is an error and not a silent default.
    model_config = ConfigDict(extra="allow")

    def unknown_keys(self) -> list[str]:
        return [k for k in (self.model_extra or {}) if not k.startswith("ansible_")]


class _GlobalVars(_Vars):
    estate_name: str
    emergency_numbers: list[EmergencyNumber] = Field(min_length=1)
    edge_router: EdgeRouter | None = None
    callfleet_lab: bool = False
    probe_source_address: str | None = None
    callfleet_metrics_url: str | None = None
    callserver_release: str | None = None
    callserver_root: str | None = None
    callserver_service: str | None = None
    ansible_user: str = "root"
    ansible_port: int | None = None
    ansible_ssh_private_key_file: str | None = None
    callfleet_ssh_known_hosts: str | None = None


class _SiteVars(_Vars):
    site_capacity_cps: int
    site_weight: int
    site_region: str | None = None
    callserver_release: str | None = None
    callserver_root: str | None = None
    ansible_port: int | None = None


class _HostVars(_Vars):
    ansible_host: str
    ansible_port: int | None = None
    callserver_release: str | None = None
    callserver_root: str | None = None
    callserver_sip_port: int | None = None


class _GroupVars(_Vars):
    callserver_release: str | None = None
    callserver_root: str | None = None
    ansible_port: int | None = None


def _fail(path: Path, key: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {key}: {message}")


def _validate(path: Path, prefix: str, model: type[_Vars], data: Any) -> Any:
    try:
        obj = model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in (prefix, *err["loc"]))
        raise _fail(path, loc, err["msg"]) from None
    unknown = obj.unknown_keys()
    if unknown:
        raise _fail(path, f"{prefix}.{unknown[0]}", "unknown key (typo?)")
    return obj


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, key, f"expected a mapping, got {type(value).__name__}")
    return value


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def load_inventory(path: Path) -> Estate:
    """Load and validate an inventory file into the estate model (InvalidInput on error)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such inventory file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise InvalidInput(f"{path}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return estate_from_inventory(raw, path)


def estate_from_inventory(raw: Any, path: Path) -> Estate:
    """Build the estate from an already parsed inventory document."""
    root = _mapping(path, "(top)", raw)
    all_group = _mapping(path, "all", root.get("all"))
    if not all_group:
        raise _fail(path, "all", "missing: an inventory needs an `all` group")
    gvars: _GlobalVars = _validate(path, "all.vars", _GlobalVars, all_group.get("vars"))
    children = _mapping(path, "all.children", all_group.get("children"))
    for stray in _mapping(path, "all.hosts", all_group.get("hosts")):
        raise _fail(path, f"all.hosts.{stray}",
                    f"host is in no site (put it under all.children.{SITES_GROUP}.children.<site>.hosts)")
    cs_key = f"all.children.{SITES_GROUP}"
    if SITES_GROUP not in children:
        raise _fail(path, cs_key, "missing: the call-server sites go under this group")
    cs = _mapping(path, cs_key, children[SITES_GROUP])
    cvars: _GroupVars = _validate(path, f"{cs_key}.vars", _GroupVars, cs.get("vars"))
    for stray in _mapping(path, f"{cs_key}.hosts", cs.get("hosts")):
        raise _fail(path, f"{cs_key}.hosts.{stray}", "host is in no site (put it under a site group)")
    site_groups = _mapping(path, f"{cs_key}.children", cs.get("children"))
    if not site_groups:
        raise _fail(path, f"{cs_key}.children", "missing: no site is declared")

    sites: list[Site] = []
    seen: dict[str, str] = {}
    seen_addr: dict[str, str] = {}
    for site_name, raw_group in site_groups.items():
        skey = f"{cs_key}.children.{site_name}"
        group = _mapping(path, skey, raw_group)
        svars: _SiteVars = _validate(path, f"{skey}.vars", _SiteVars, group.get("vars"))
        hosts: list[Host] = []
        host_map = _mapping(path, f"{skey}.hosts", group.get("hosts"))
        if not host_map:
            raise _fail(path, f"{skey}.hosts", "missing: a site needs at least one host")
        for host_name, hv in host_map.items():
            hkey = f"{skey}.hosts.{host_name}"
            hvars: _HostVars = _validate(path, hkey, _HostVars, hv)
            if str(host_name) in seen:
                raise _fail(path, hkey, f"host is already in site {seen[str(host_name)]}")
            seen[str(host_name)] = str(site_name)
            if hvars.ansible_host in seen_addr:
                raise _fail(path, f"{hkey}.ansible_host",
                            f"address {hvars.ansible_host} is already used by {seen_addr[hvars.ansible_host]}")
            seen_addr[hvars.ansible_host] = str(host_name)
            release = _first(hvars.callserver_release, svars.callserver_release,
                             cvars.callserver_release, gvars.callserver_release)
            if release is None:
                raise _fail(path, f"{hkey}.callserver_release", "Field required (the release this host runs)")
            fields = {
                "name": host_name, "site": site_name, "address": hvars.ansible_host,
                "ssh_port": _first(hvars.ansible_port, svars.ansible_port, cvars.ansible_port,
                                   gvars.ansible_port, 22),
                "sip_port": _first(hvars.callserver_sip_port, 5060),
                "release": release,
                "root": _first(hvars.callserver_root, svars.callserver_root, cvars.callserver_root,
                               gvars.callserver_root, "/opt/callserver"),
            }
            hosts.append(_build(path, hkey, Host, fields, {"address": "ansible_host",
                                                           "release": "callserver_release"}))
        sites.append(_build(path, skey, Site, {
            "name": site_name, "capacity_cps": svars.site_capacity_cps,
            "weight": svars.site_weight, "region": svars.site_region, "hosts": tuple(hosts),
        }, {"capacity_cps": "vars.site_capacity_cps", "weight": "vars.site_weight"}))
    estate: Estate = _build(path, "all", Estate, {
        "name": gvars.estate_name, "sites": tuple(sites), "numbers": tuple(gvars.emergency_numbers),
        "edge": gvars.edge_router, "ssh_user": gvars.ansible_user, "lab": gvars.callfleet_lab,
        "probe_source": gvars.probe_source_address, "metrics_url": gvars.callfleet_metrics_url,
        "ssh_known_hosts": gvars.callfleet_ssh_known_hosts, "ssh_private_key": gvars.ansible_ssh_private_key_file,
    }, {"name": "vars.estate_name", "metrics_url": "vars.callfleet_metrics_url"})
    return estate


def _build(path: Path, prefix: str, model: type[Any], fields: dict[str, Any],
           rename: dict[str, str]) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] in rename:
            loc[0] = rename[loc[0]]
        key = ".".join([prefix, *loc]) if loc else prefix
        msg = err["msg"].removeprefix("Value error, ")
        raise _fail(path, key, msg) from None


def estate_to_inventory(estate: Estate, *, extra_vars: dict[str, Any] | None = None) -> dict[str, Any]:
    """Render the estate as an Ansible inventory document (the inverse of loading)."""
    gvars: dict[str, Any] = {
        "estate_name": estate.name,
        "callfleet_lab": estate.lab,
        "ansible_user": estate.ssh_user,
        "emergency_numbers": [n.model_dump(mode="json") for n in estate.numbers],
    }
    if estate.ssh_known_hosts is not None:
        gvars["callfleet_ssh_known_hosts"] = estate.ssh_known_hosts
    if estate.ssh_private_key is not None:
        gvars["ansible_ssh_private_key_file"] = estate.ssh_private_key
    if estate.probe_source is not None:
        gvars["probe_source_address"] = str(estate.probe_source)
    if estate.metrics_url is not None:
        gvars["callfleet_metrics_url"] = estate.metrics_url
    if estate.edge is not None:
        gvars["edge_router"] = estate.edge.model_dump(mode="json", exclude_none=True)
    gvars.update(extra_vars or {})
    sites: dict[str, Any] = {}
    for site in estate.sites:
        svars: dict[str, Any] = {"site_capacity_cps": site.capacity_cps, "site_weight": site.weight}
        if site.region is not None:
            svars["site_region"] = site.region
        sites[site.name] = {
            "vars": svars,
            "hosts": {
                h.name: {
                    "ansible_host": str(h.address),
                    "ansible_port": h.ssh_port,
                    "callserver_release": h.release,
                    "callserver_root": h.root,
                    **({"callserver_sip_port": h.sip_port} if h.sip_port != 5060 else {}),
                }
                for h in site.hosts
            },
        }
    return {"all": {"vars": gvars, "children": {SITES_GROUP: {"children": sites}}}}


def write_inventory(estate: Estate, path: Path, *, extra_vars: dict[str, Any] | None = None,
                    header: str = "") -> None:
    """Write the inventory atomically (temp file then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    body = yaml.safe_dump(estate_to_inventory(estate, extra_vars=extra_vars), sort_keys=False)
    tmp.write_text(header + body, encoding="utf-8")
    tmp.replace(path)
