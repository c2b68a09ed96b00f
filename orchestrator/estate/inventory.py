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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.estate.ansible_view import InventoryView, ansible_view
from orchestrator.estate.model import EdgeRouter, EmergencyNumber, Estate, Host, ServiceKind, Site
from orchestrator.estate.ssh import weakening_variable
from orchestrator.userfile import load_yaml

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
    callserver_service: ServiceKind = ServiceKind.SYSTEMD
    # Where releases come from (the role's variables; docs/RELEASES.md): a bundle copied from
    # the controller, or a package from an APT repository line such as
    # "deb [trusted=yes] http://repo.example:8080/ ./".
    callserver_release_source: Literal["bundle", "package"] = "bundle"
    callserver_package_repository: str | None = Field(default=None, pattern=r"^deb(-src)? .+$")
    ansible_become: bool = False
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
    if isinstance(data, dict):
        weak = weakening_variable(data)
        if weak is not None:
            raise _fail(path, f"{prefix}.{weak[0]}", weak[1])
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
    """Load and validate an inventory (a file or a directory) into the estate model.

    What callfleet sees is what Ansible sees: the estate is built from Ansible's own view
    of the inventory (orchestrator/estate/ansible_view.py: group_vars/, host_vars/, INI,
    vaulted values, plugins). A single YAML file that is the whole estate is also checked
    as written first, so an error names the exact key where it stands. InvalidInput on error."""
    path = Path(path).absolute()
    if not path.exists() and not path.is_symlink():
        raise InvalidInput(f"{path}: no such inventory file")
    if path.is_file() and path.suffix in (".yml", ".yaml"):
        raw = load_yaml(path, what="inventory")
        if _has_vars_dirs(path.parent):
            root = _mapping(path, "(top)", raw)
            for name, group in root.items():
                _refuse_weakening(path, str(name), group)
        else:
            estate_from_inventory(raw, path)
    elif not path.is_dir() and not path.is_file():
        raise InvalidInput(f"{path}: not a regular file or directory")
    _check_vars_files(path if path.is_dir() else path.parent)
    return estate_from_inventory(canonical_document(ansible_view(path), path), path)


def _check_vars_files(directory: Path) -> None:
    """Every group_vars/host_vars YAML file Ansible will merge goes through the safe loader
    first: duplicate keys, budgets and weakening variables are refused naming that file."""
    for sub in ("group_vars", "host_vars"):
        base = directory / sub
        if not base.is_dir():
            continue
        for file in sorted(p for p in base.rglob("*") if p.is_file()):
            if file.suffix.lower() not in ("", ".yml", ".yaml", ".json"):
                continue
            with file.open("rb") as fh:
                if fh.read(14) == b"$ANSIBLE_VAULT":
                    continue  # a whole vaulted file: Ansible opens it, with the vault password
            data = load_yaml(file, what="inventory variables")
            if isinstance(data, dict):
                weak = weakening_variable(data)
                if weak is not None:
                    raise _fail(file, weak[0], weak[1])


def _has_vars_dirs(directory: Path) -> bool:
    """Whether Ansible will merge group_vars/ or host_vars/ files beside the inventory."""
    for sub in ("group_vars", "host_vars"):
        d = directory / sub
        if d.is_dir() and any(p.suffix.lower() not in (".md", ".txt") for p in d.iterdir()):
            return True
    return False


# Which level of the canonical document a merged variable belongs to. Keys that may be set at
# several levels (release, root, port) are per host: the merged value is the host's.
_SITE_ONLY = frozenset({"site_capacity_cps", "site_weight", "site_region"})
_HOST_LEVEL = frozenset({"ansible_host", "ansible_port", "callserver_release", "callserver_root",
                         "callserver_sip_port"})
_GLOBAL_ONLY = frozenset(set(_GlobalVars.model_fields) - _SITE_ONLY - _HOST_LEVEL)


def canonical_document(view: InventoryView, path: Path) -> dict[str, Any]:
    """The nested document (all.vars, site vars, hosts) equivalent to Ansible's merged view,
    for the one validator below. Variables that must be one value for the estate or a site
    are refused when group_vars or host_vars give different hosts different values."""
    cs_key = f"all.children.{SITES_GROUP}"
    if SITES_GROUP not in view.children:
        raise _fail(path, cs_key, "missing: the call-server sites go under this group")
    for stray in view.hosts.get("ungrouped", []):
        raise _fail(path, f"all.hosts.{stray}",
                    f"host is in no site (put it under all.children.{SITES_GROUP}.children.<site>.hosts)")
    for stray in view.hosts.get(SITES_GROUP, []):
        raise _fail(path, f"{cs_key}.hosts.{stray}", "host is in no site (put it under a site group)")
    sites = view.children[SITES_GROUP]
    if not sites:
        raise _fail(path, f"{cs_key}.children", "missing: no site is declared")
    all_hosts = [h for site in sites for h in view.hosts.get(site, [])]
    gvars: dict[str, Any] = {}
    first: dict[str, str] = {}
    seen_site: dict[str, str] = {}
    site_docs: dict[str, Any] = {}
    for site in sites:
        skey = f"{cs_key}.children.{site}"
        svars: dict[str, Any] = {}
        host_docs: dict[str, Any] = {}
        for host in view.hosts.get(site, []):
            hkey = f"{skey}.hosts.{host}"
            if host in seen_site:
                raise _fail(path, hkey, f"host is already in site {seen_site[host]}")
            seen_site[host] = site
            merged = view.hostvars.get(host, {})
            weak = weakening_variable(merged)
            if weak is not None:
                raise _fail(path, f"{hkey}.{weak[0]}", weak[1])
            host_doc: dict[str, Any] = {}
            for key, value in merged.items():
                if key in _GLOBAL_ONLY:
                    if key in gvars and gvars[key] != value:
                        raise _fail(path, f"all.vars.{key}", f"differs between {first[key]} and {host} "
                                    "(a group_vars or host_vars file overrides it): it is one value for the estate")
                    gvars[key] = value
                    first.setdefault(key, host)
                elif key in _SITE_ONLY:
                    if key in svars and svars[key] != value:
                        raise _fail(path, f"{skey}.vars.{key}", f"differs between hosts of {site}: it is one "
                                    "value for the site")
                    svars[key] = value
                else:
                    host_doc[key] = value
            host_docs[host] = host_doc
        site_docs[site] = {"vars": svars, "hosts": host_docs}
    for key, host in first.items():
        missing = [h for h in all_hosts if key not in view.hostvars.get(h, {})]
        if missing:
            raise _fail(path, f"all.vars.{key}", f"set for {host} but not for {missing[0]}: it is one value for "
                        "the estate")
    return {"all": {"vars": gvars, "children": {SITES_GROUP: {"children": site_docs}}}}


_GROUP_KEYS = {"vars", "hosts", "children"}


def _refuse_weakening(path: Path, prefix: str, group: Any) -> None:
    """Every group and host anywhere in the document, not only the sites: Ansible applies the
    variables of any group a host belongs to. A group holds only vars, hosts and children
    (Ansible skips anything else with a warning: here it is an error, as a typo would be)."""
    if not isinstance(group, dict):
        return
    for key in group:
        if key not in _GROUP_KEYS:
            raise _fail(path, f"{prefix}.{key}", "unknown key in a group (only vars, hosts and children)")
    hosts = group.get("hosts")
    for key, variables in (("vars", group.get("vars")),
                           *((f"hosts.{h}", hv) for h, hv in (hosts.items() if isinstance(hosts, dict) else ()))):
        weak = weakening_variable(variables) if isinstance(variables, dict) else None
        if weak is not None:
            raise _fail(path, f"{prefix}.{key}.{weak[0]}", weak[1])
    children = group.get("children")
    if isinstance(children, dict):
        for name, child in children.items():
            _refuse_weakening(path, f"{prefix}.children.{name}", child)


def estate_from_inventory(raw: Any, path: Path) -> Estate:
    """Build the estate from an already parsed inventory document."""
    root = _mapping(path, "(top)", raw)
    for name, group in root.items():
        _refuse_weakening(path, str(name), group)
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
        "become": gvars.ansible_become, "service": gvars.callserver_service,
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
        "callserver_service": estate.service.value,
        "emergency_numbers": [n.model_dump(mode="json") for n in estate.numbers],
    }
    if estate.become:
        gvars["ansible_become"] = True
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
