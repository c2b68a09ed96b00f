"""Per-machine identity written into the overlay UPPER dir before the first boot.

The base image carries nothing per-machine; each machine's upper dir gets its
hostname, a random machine-id, an ed25519 SSH host key generated here (so the
orchestrator knows the public key and writes known_hosts itself: no trust on
first use), the lab user's authorized key and the static network config.

Identity is written only when absent: the upper dir survives a machine restart, so
a restarted machine keeps its host key, machine-id and whatever it changed.
"""

from __future__ import annotations

import os
import secrets
import stat
from ipaddress import IPv4Interface
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.lab.machines.host import run

NETWORK_FILE = "etc/systemd/network/10-host0.network"
HOST_KEY = "etc/ssh/ssh_host_ed25519_key"


class Identity(BaseModel):
    """What the orchestrator must remember about a machine's identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    hostname: str
    machine_id: str
    host_key_pub: str   # "ssh-ed25519 AAAA... comment"


def generate_keypair(private: Path, comment: str) -> str:
    """An ed25519 key pair at `private` / `private`.pub (kept when present); returns the public line."""
    if not private.exists():
        private.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)], timeout=30)
    return private.with_name(private.name + ".pub").read_text().strip()


def mkdirs_like(base: Path, upper: Path, rel: str) -> Path:
    """Create upper/rel with each component's owner and mode copied from base/rel.

    In an overlay the upper dir's metadata wins for a directory that exists in both
    layers: a /home/callfleet created 0700 root here would lock the user out of ssh
    (StrictModes), so every directory mirrors its base counterpart."""
    current_upper, current_base = upper, base
    for part in Path(rel).parts:
        current_upper, current_base = current_upper / part, current_base / part
        if not current_upper.exists():
            current_upper.mkdir()
            try:
                st = current_base.stat()
                os.chown(current_upper, st.st_uid, st.st_gid)
                current_upper.chmod(stat.S_IMODE(st.st_mode))
            except FileNotFoundError:
                current_upper.chmod(0o755)
    return current_upper


def _write(base: Path, upper: Path, rel: str, data: str | bytes, mode: int, owner: tuple[int, int] = (0, 0)) -> None:
    target = mkdirs_like(base, upper, str(Path(rel).parent)) / Path(rel).name
    tmp = target.with_name(f".{target.name}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    os.chown(tmp, *owner)
    tmp.chmod(mode)
    tmp.replace(target)


def network_config(address: IPv4Interface) -> str:
    """systemd-networkd config for host0: one static address, no gateway, no IPv6, no DHCP.

    ConfigureWithoutCarrier/IgnoreCarrierLoss: the address is there at once and stays
    while a link-down fault cuts the cable, like a real NIC's configured address."""
    return (
        "# written by callfleet: the machine's only address; no gateway, no default route\n"
        "[Match]\nName=host0\n\n"
        "[Link]\nRequiredForOnline=yes\n\n"
        f"[Network]\nAddress={address}\nDHCP=no\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        "LLDP=no\nEmitLLDP=no\nConfigureWithoutCarrier=yes\nIgnoreCarrierLoss=yes\n"
    )


def prepare_upper(*, base: Path, upper: Path, hostname: str, address: IPv4Interface, user: str,
                  authorized_key: str, keys_dir: Path) -> Identity:
    """Write (or keep) the machine's identity and config into `upper`; returns it.

    The host key pair is generated into `keys_dir` (the lab's state, root-only) and
    copied in, so the orchestrator holds the public key before the machine exists."""
    upper.mkdir(parents=True, exist_ok=True)
    upper.chmod(0o755)  # the upper root's mode becomes the machine's "/" mode
    _write(base, upper, "etc/hostname", hostname + "\n", 0o644)
    # sudo and kamailio resolve the own hostname; there is no DNS in the lab (no route to one).
    hosts = f"127.0.0.1\tlocalhost\n{address.ip}\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    _write(base, upper, "etc/hosts", hosts, 0o644)

    id_file = upper / "etc/machine-id"
    machine_id = id_file.read_text().strip() if id_file.exists() else ""
    if len(machine_id) != 32:
        machine_id = secrets.token_hex(16)  # 128 random bits, the format systemd expects
        _write(base, upper, "etc/machine-id", machine_id + "\n", 0o444)

    # A kept upper dir (keep_overlays) is authoritative: its key is what sshd will serve.
    upper_pub = upper / (HOST_KEY + ".pub")
    if (upper / HOST_KEY).exists() and upper_pub.exists():
        public = upper_pub.read_text().strip()
    else:
        private = keys_dir / f"{hostname}_ed25519"
        for stale in (private, private.with_name(private.name + ".pub")):
            stale.unlink(missing_ok=True)  # never reuse a key another machine of this name had
        public = generate_keypair(private, comment=f"root@{hostname}")
        _write(base, upper, HOST_KEY, private.read_bytes(), 0o600)
        _write(base, upper, HOST_KEY + ".pub", public + "\n", 0o644)
        private.unlink()  # the private half lives only in the machine; the orchestrator keeps the public one

    passwd = {line.split(":")[0]: line.split(":") for line in (base / "etc/passwd").read_text().splitlines()}
    uid, gid, home = int(passwd[user][2]), int(passwd[user][3]), passwd[user][5].lstrip("/")
    _write(base, upper, f"{home}/.ssh/authorized_keys", authorized_key.strip() + "\n", 0o600, owner=(uid, gid))
    ssh_dir = upper / home / ".ssh"
    os.chown(ssh_dir, uid, gid)
    ssh_dir.chmod(0o700)

    # Always rewritten: the address plan is the lab's, not the machine's to change.
    _write(base, upper, NETWORK_FILE, network_config(address), 0o644)
    return Identity(hostname=hostname, machine_id=machine_id, host_key_pub=public)
