"""SSH ingress of the lab's call servers: which source networks may open an SSH session.

On OpenStack a security-group rule says it. The lab has no packet filter on its machines
(nftables is not part of the image), so each call server's own sshd enforces it:
`AllowUsers <lab user>@<cidr> ...` in a drop-in, written by the machine's root through
nsenter (no SSH needed to change SSH), checked with `sshd -t` and applied with a reload.
Sessions already open stay; every new connection from another source is refused.

A rule that would shut the orchestrator itself out (its bridge address in none of the
networks) is refused before any machine changes, as is a site that is not running.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path

from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.lab.machines.errors import MachineBootFailed
from orchestrator.lab.machines.image import USER
from orchestrator.lab.machines.manager import MachineLab
from orchestrator.lab.state import LabState, machines_dir
from orchestrator.lab.topology import LabParams, lab_estate, probe_address

DROPIN = "/etc/ssh/sshd_config.d/10-callfleet-ingress.conf"


def parse_cidrs(cidrs: Sequence[str]) -> list[IPv4Network | IPv6Network]:
    """The networks, or InvalidInput naming the first that is not one."""
    if not cidrs:
        raise InvalidInput("SSH ingress: at least one source network is required")
    out = []
    for cidr in cidrs:
        try:
            out.append(ip_network(cidr, strict=False))
        except ValueError:
            raise InvalidInput(f"SSH ingress: {cidr!r} is not a CIDR") from None
    return out


def dropin_text(cidrs: Sequence[str]) -> str:
    """The sshd drop-in admitting the lab user from these networks only."""
    patterns = " ".join(f"{USER}@{net}" for net in parse_cidrs(cidrs))
    return ("# callfleet lab: SSH ingress (the lab's security-group rule); written by `provision up`\n"
            f"AllowUsers {patterns}\n")


def check_keeps_orchestrator(cidrs: Sequence[str], params: LabParams) -> None:
    """Refuse networks that leave out the address the orchestrator connects from."""
    own = ip_address(probe_address(params))
    if not any(own in net for net in parse_cidrs(cidrs)):
        raise InvalidInput(f"SSH ingress {', '.join(cidrs)} would shut the orchestrator out: it connects "
                           f"from {own}", hint=f"include {params.network} (the lab network) or {own}/32")


def _site_machines(state_dir: Path, site: str) -> tuple[LabParams, MachineLab, list[str]]:
    state = LabState.load(state_dir)
    if state is None:
        raise InvalidInput(f"{state_dir}: no lab here; run `callfleet lab up` first")
    params = LabParams(sites=state.params.sites, hosts_per_site=state.params.hosts_per_site,
                       base=state.params.base)
    hosts = [h.name for h in lab_estate(params, machines_dir(state_dir)).site(site).hosts]
    return params, MachineLab.open(machines_dir(state_dir)), hosts


def _as_root(ml: MachineLab, host: str, script: str, *, text: str | None = None) -> None:
    from orchestrator.lab.machines.host import run

    done = run(ml.nsenter_argv(host, "sh", "-c", script), timeout=30, check=False, input_text=text)
    if done.returncode != 0:
        raise RemoteError(f"{host}: SSH ingress not applied: {(done.stderr or done.stdout).strip()[-300:]}")


def apply_ssh_ingress(*, state_dir: Path, site: str, cidrs: Sequence[str]) -> None:
    """Admit SSH to every call server of `site` from `cidrs` only."""
    params, ml, hosts = _site_machines(state_dir.resolve(), site)
    text = dropin_text(cidrs)
    check_keeps_orchestrator(cidrs, params)
    path = shlex.quote(DROPIN)
    # Written, checked, and only then reloaded; a config sshd refuses is taken back out.
    script = (f"cat > {path} && chmod 0644 {path} && "
              f"if sshd -t; then systemctl reload ssh; else rm -f {path}; exit 1; fi")
    for host in hosts:
        _as_root(ml, host, script, text=text)


def remove_ssh_ingress(*, state_dir: Path, site: str) -> None:
    """Take the rule off every running call server of `site` (stopped ones keep their disk as is)."""
    state_dir = state_dir.resolve()
    if LabState.load(state_dir) is None or not (machines_dir(state_dir) / "machines.json").exists():
        return
    _, ml, hosts = _site_machines(state_dir, site)
    for host in hosts:
        try:
            _as_root(ml, host, f"rm -f {shlex.quote(DROPIN)} && systemctl reload ssh")
        except MachineBootFailed:
            continue  # not running: powered off with the site, nothing to reload


def current_ssh_ingress(*, state_dir: Path, host: str) -> str | None:
    """The drop-in on one call server, or None when it has none (for status and tests)."""
    from orchestrator.lab.machines.host import run

    ml = MachineLab.open(machines_dir(state_dir.resolve()))
    done = run(ml.nsenter_argv(host, "cat", DROPIN), timeout=15, check=False)
    return done.stdout if done.returncode == 0 else None
