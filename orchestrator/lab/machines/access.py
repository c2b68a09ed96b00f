"""SSH access to lab machines: the lab's client key, known_hosts and ssh_config.

known_hosts is written from the host keys the orchestrator generated, before any
machine boots, and every connection uses StrictHostKeyChecking=yes: no trust on
first use, and a machine that serves another key is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orchestrator.lab.machines.models import MachineRecord
from orchestrator.lab.machines.overlay import generate_keypair


def ssh_dir(state_dir: Path) -> Path:
    """<state>/ssh: client key, known_hosts, ssh_config."""
    return state_dir / "ssh"


def client_key(state_dir: Path) -> Path:
    """The lab's private client key (generated once per state dir)."""
    return ssh_dir(state_dir) / "id_ed25519"


def ensure_client_key(state_dir: Path) -> str:
    """Generate the lab key pair if absent; returns its public line (the machines' authorized key)."""
    d = ssh_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    return generate_keypair(client_key(state_dir), comment="callfleet-lab")


def write_known_hosts(state_dir: Path, machines: Iterable[MachineRecord]) -> Path:
    """known_hosts naming each machine by hostname and address (so either works with ssh)."""
    path = ssh_dir(state_dir) / "known_hosts"
    lines = [f"{m.name},{m.address} {' '.join(m.host_key_pub.split()[:2])}" for m in machines]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(path)
    return path


def write_ssh_config(state_dir: Path, machines: Iterable[MachineRecord], user: str) -> Path:
    """ssh_config: `ssh -F <state>/ssh/ssh_config site1-cs1` logs in as the lab user, strictly."""
    d = ssh_dir(state_dir)
    blocks = [f"Host {m.name}\n  HostName {m.address}\n" for m in machines]
    common = (
        "Host *\n"
        f"  User {user}\n"
        f"  IdentityFile {client_key(state_dir)}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {d / 'known_hosts'}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 5\n"
        "  LogLevel ERROR\n"
    )
    path = d / "ssh_config"
    path.write_text("".join(blocks) + common)
    return path


def ssh_argv(state_dir: Path, target: str, command: str) -> list[str]:
    """argv for running `command` on `target` (hostname or address) with the lab's config."""
    return ["ssh", "-F", str(ssh_dir(state_dir) / "ssh_config"), target, command]
