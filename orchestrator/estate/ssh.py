"""How callfleet reaches hosts over SSH, the same for Ansible, testinfra and Fabric.

One trust anchor per estate: the known_hosts file the inventory names
(`callfleet_ssh_known_hosts`), else the user's ~/.ssh/known_hosts, named explicitly.
Host keys are always checked against it, and nothing an inventory or ~/.ssh/config
says can weaken that:
- inventory variables that would turn checking off, point at another known_hosts,
  replace callfleet's ssh options or switch to another connection plugin are refused
  (`weakening_variable`), naming the variable;
- the OpenSSH options callfleet passes come first on every ssh command line, and ssh
  keeps the first value it is given for an option, so later inventory arguments or
  Ansible's own `StrictHostKeyChecking=no` cannot override them; `-F none` stops
  ssh from reading ~/.ssh/config and /etc/ssh/ssh_config at all.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import Estate

# ssh options that decide which host keys are trusted, and how strictly.
_TRUST_OPTIONS = re.compile(
    r"(?i)(StrictHostKeyChecking|UserKnownHostsFile|GlobalKnownHostsFile|KnownHostsCommand|HostKeyAlias|"
    r"VerifyHostKeyDNS|UpdateHostKeys|CheckHostIP)")
# Variables whose whole purpose is to change how hosts are verified, or that replace callfleet's options.
_REFUSED = {
    "ansible_ssh_args": "it replaces callfleet's own ssh options (host-key checking among them)",
    "ansible_ssh_executable": "a wrapper in place of ssh could drop callfleet's host-key options",
}
_HOST_KEY_SWITCHES = ("ansible_host_key_checking", "ansible_ssh_host_key_checking",
                      "ansible_paramiko_host_key_checking")
_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_scp_extra_args",
             "ansible_sftp_extra_args")
_CONNECTIONS = ("ssh", "smart")  # smart is ssh in every Ansible callfleet supports
_TRUE = ("true", "yes", "on", "1", "y", "t")


def weakening_variable(variables: Mapping[str, Any]) -> tuple[str, str] | None:
    """(variable, why) for the first inventory variable that would weaken host-key checking."""
    for key, why in _REFUSED.items():
        if key in variables:
            return key, f"refused: {why}"
    for key in _HOST_KEY_SWITCHES:
        if key in variables and str(variables[key]).strip().lower() not in _TRUE:
            return key, "refused: host-key checking cannot be turned off (callfleet always verifies host keys)"
    for key in _ARG_VARS:
        value = variables.get(key)
        if value is None:
            continue
        text = " ".join(value) if isinstance(value, list) else str(value)
        match = _TRUST_OPTIONS.search(text)
        if match:
            return key, (f"refused: sets {match.group(1)}; host keys are checked against "
                         "callfleet_ssh_known_hosts only")
        if re.search(r"(^|\s)-[A-Za-z]*F", text):
            return key, "refused: -F would load another ssh config (callfleet reads none)"
    connection = variables.get("ansible_connection")
    if connection is not None and str(connection) not in _CONNECTIONS:
        return "ansible_connection", (f"refused: {connection!r}; callfleet reaches hosts over OpenSSH only "
                                      "(other plugins check host keys differently or not at all)")
    return None


# A silent host is declared dead after ALIVE_INTERVAL_S x ALIVE_COUNT seconds (15 s).
CONNECT_TIMEOUT_S = 10
ALIVE_INTERVAL_S = 5
ALIVE_COUNT = 3


class SshTrust(BaseModel):
    """The host keys callfleet trusts for one estate, and the ssh options that enforce them."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    known_hosts: Path

    def openssh_options(self) -> list[str]:
        """Options for every OpenSSH command line, before anything else (ssh keeps first values)."""
        return ["-F", "none",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "UpdateHostKeys=no",
                "-o", "CheckHostIP=no",
                # A host whose link dies must fail the run, not hang it: without keepalives a
                # master connection (ControlPersist) to a silent host waits for TCP for hours,
                # and every session multiplexed over it with it.
                "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}",
                "-o", f"ServerAliveCountMax={ALIVE_COUNT}"]

    def control_dir(self) -> Path:
        """Where SSH master sockets for this trust anchor live (created, mode 0700).

        A master connection skips host-key verification for every session it carries, so
        a master opened under one known_hosts file must never serve a run that trusts
        another: the directory is keyed by the file. Short, since ssh appends ~58 bytes
        to it and a socket path must stay under 108."""
        key = hashlib.sha256(str(self.known_hosts).encode()).hexdigest()[:10]
        path = Path(tempfile.gettempdir()) / "cf-cp" / key
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def openssh_args(self) -> str:
        """The same options as one shell-quoted string (Ansible's ssh_args, testinfra's extra args)."""
        return " ".join(shlex.quote(o) for o in self.openssh_options())


def ssh_trust(estate: Estate) -> SshTrust:
    """The estate's trust anchor. A named known_hosts file that does not exist is invalid input:
    without it every host would be refused, and the message would blame the hosts."""
    if estate.ssh_known_hosts is None:
        return SshTrust(known_hosts=Path("~/.ssh/known_hosts").expanduser())
    path = Path(estate.ssh_known_hosts).expanduser()
    if not path.is_file():
        raise InvalidInput(f"known_hosts file {path} (callfleet_ssh_known_hosts) does not exist",
                           hint="write it from the hosts' public keys; host keys are never accepted blindly")
    return SshTrust(known_hosts=path.resolve())
