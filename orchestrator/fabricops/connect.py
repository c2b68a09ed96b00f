"""Fabric connections built from the estate, with host keys always verified.

Fabric gives every Connection a paramiko client that trusts any unknown host key
(AutoAddPolicy) and reads the user's ~/.ssh/config. Neither is acceptable on an
emergency-call estate: here each client loads the estate's known_hosts and refuses
(RejectPolicy) any host whose key is missing or different, and no ssh_config file
can redirect a host name, a port or a proxy behind the inventory's back.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from fabric import Config, Connection
from paramiko import RejectPolicy, SSHConfig
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    NoValidConnectionsError,
    SSHException,
)

from orchestrator.estate.model import Estate, Host
from orchestrator.estate.ssh import ssh_trust

FailureKind = Literal["host-key", "unreachable", "auth", "timeout", "no-exit-status", "ssh"]


def known_hosts_path(estate: Estate) -> Path:
    """The estate's trust anchor (the same file Ansible and testinfra check against)."""
    return ssh_trust(estate).known_hosts


def ssh_target(host: Host) -> str:
    """How known_hosts names the host: `addr` on port 22, `[addr]:port` otherwise."""
    return str(host.address) if host.ssh_port == 22 else f"[{host.address}]:{host.ssh_port}"


def connection(*, estate: Estate, host: Host, known_hosts: Path, connect_timeout: float) -> Connection:
    """A not-yet-opened Fabric connection to `host` that refuses unknown or changed host keys."""
    return connect_to(estate=estate, address=str(host.address), port=host.ssh_port, known_hosts=known_hosts,
                      connect_timeout=connect_timeout)


def connect_to(*, estate: Estate, address: str, port: int, known_hosts: Path, connect_timeout: float) -> Connection:
    """A not-yet-opened Fabric connection to any estate machine (a call server, the edge),
    as the estate's SSH user with its key, refusing unknown or changed host keys."""
    key = estate.ssh_private_key
    connect_kwargs: dict[str, object] = {
        "look_for_keys": False,  # only the estate's key: no surprise identities from ~/.ssh
        "allow_agent": False,
        "banner_timeout": connect_timeout,
        "auth_timeout": connect_timeout,
    }
    if key:
        connect_kwargs["key_filename"] = str(Path(key).expanduser())
    # An explicit empty SSHConfig stops Fabric from reading /etc/ssh/ssh_config and
    # ~/.ssh/config; lazy=True skips Fabric's own system/user config files.
    conn = Connection(address, user=estate.ssh_user, port=port,
                      config=Config(lazy=True, ssh_config=SSHConfig()),
                      connect_timeout=max(1, round(connect_timeout)), connect_kwargs=connect_kwargs)
    if known_hosts.is_file():  # absent: no key is trusted, RejectPolicy refuses every host
        conn.client.load_host_keys(str(known_hosts))
    conn.client.set_missing_host_key_policy(RejectPolicy())
    return conn


def host_label(host: Host) -> str:
    """`name (address)` as failure messages name a host."""
    return f"{host.name} ({ssh_target(host)})"


def describe_failure(exc: BaseException, *, where: str, known_hosts: Path) -> tuple[FailureKind, str]:
    """Why a host could not run the command: a kind and one line naming it (`where`)."""
    kh = str(known_hosts)
    if isinstance(exc, BadHostKeyException):
        got = exc.key.fingerprint
        return "host-key", (f"{where}: host key did not verify: the host presented {got}, "
                            f"which {kh} does not hold for it (host replaced, or someone else answering)")
    if isinstance(exc, AuthenticationException):
        return "auth", f"{where}: SSH authentication failed: {exc}"
    if isinstance(exc, NoValidConnectionsError):
        return "unreachable", f"{where}: unreachable: {exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout", f"{where}: no SSH answer in time: {exc or 'timed out'}"
    if isinstance(exc, SSHException) and "not found in known_hosts" in str(exc):
        # RejectPolicy's refusal of a host absent from known_hosts.
        return "host-key", f"{where}: host key did not verify: the host is not in {kh}"
    if isinstance(exc, OSError):
        return "unreachable", f"{where}: unreachable: {exc}"
    return "ssh", f"{where}: SSH failed: {type(exc).__name__}: {exc}"
