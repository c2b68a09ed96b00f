"""The lab's private sshd: one daemon listening on every lab host address.

Keys are generated per lab; known_hosts is written from the host public key, so the
client never trusts on first use and a changed key is refused.
"""

from __future__ import annotations

import getpass
import hashlib
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from orchestrator import procs
from orchestrator.lab.topology import SSH_PORT

MAX_LISTEN_ADDRESSES = 16  # OpenSSH's MAX_LISTEN_SOCKS: one ListenAddress per lab host


class SshPaths:
    """Where the lab keeps its SSH material."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "ssh"
        self.host_key = self.dir / "host_ed25519"
        self.client_key = self.dir / "id_ed25519"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        self.client_config = self.dir / "ssh_config"
        self.pidfile = self.dir / "sshd.pid"
        self.log = self.dir / "sshd.log"
        # ssh appends ~58 bytes (%C hash + temp suffix) to the ControlPath directory and
        # the whole must stay under 108 bytes: keep it short whatever the state dir.
        digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:10]
        self.control_dir = Path(tempfile.gettempdir()) / f"cfcp-{digest}"


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdout=subprocess.DEVNULL)


def write_known_hosts(paths: SshPaths, addresses: Sequence[str], *, port: int = SSH_PORT) -> None:
    """known_hosts entries for every lab address, from the host public key."""
    pub = (paths.host_key.with_suffix(".pub")).read_text().split()
    lines = [f"[{addr}]:{port} {pub[0]} {pub[1]}" for addr in addresses]
    paths.known_hosts.write_text("\n".join(lines) + "\n")


def prepare(paths: SshPaths, addresses: Sequence[str], *, port: int = SSH_PORT) -> None:
    """Generate keys and write sshd_config, authorized_keys, known_hosts, ssh_config."""
    paths.dir.mkdir(parents=True, exist_ok=True)
    paths.control_dir.mkdir(parents=True, exist_ok=True)
    _keygen(paths.host_key, "callfleet-lab-host")
    _keygen(paths.client_key, "callfleet-lab-client")
    paths.authorized_keys.write_text(paths.client_key.with_suffix(".pub").read_text())
    paths.authorized_keys.chmod(0o600)
    user = getpass.getuser()
    listen = "\n".join(f"ListenAddress {a}:{port}" for a in addresses)
    paths.config.write_text(f"""# callfleet lab sshd (generated)
{listen}
HostKey {paths.host_key}
PidFile {paths.pidfile}
AuthorizedKeysFile {paths.authorized_keys}
AllowUsers {user}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# files live under /tmp, whose permissions sshd's StrictModes rejects
StrictModes no
# the default (10:30:100) drops connections when a dozen clients connect at once
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
    write_known_hosts(paths, addresses, port=port)
    paths.client_config.write_text(f"""# ssh -F {paths.client_config} <lab address>
Host *
  Port {port}
  User {user}
  IdentityFile {paths.client_key}
  IdentitiesOnly yes
  UserKnownHostsFile {paths.known_hosts}
  StrictHostKeyChecking yes
  BatchMode yes
""")


def ssh_common_args(paths: SshPaths) -> str:
    """The ssh options Ansible and testinfra use: strict host-key checking, our known_hosts."""
    # A persistent master connection per host makes repeated checks several times
    # faster; %C (a hash) keeps the ControlPath short of the 108-byte socket limit.
    return (f"-o UserKnownHostsFile={paths.known_hosts} -o StrictHostKeyChecking=yes "
            f"-o IdentitiesOnly=yes -o BatchMode=yes -o ControlMaster=auto "
            f"-o ControlPersist=30s -o ControlPath={paths.control_dir}/%C")


def start(paths: SshPaths) -> int:
    """Start sshd in the foreground mode (-D) as a detached process; returns its pid."""
    sshd = procs.require_binary("sshd", package="openssh-server")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    check = subprocess.run([sshd, "-t", "-f", str(paths.config)], capture_output=True, text=True)
    if check.returncode != 0:
        from orchestrator.errors import RemoteError

        raise RemoteError(f"sshd config rejected: {check.stderr.strip()}")
    start_of_log = paths.log.stat().st_size if paths.log.exists() else 0
    pid = procs.spawn([sshd, "-D", "-f", str(paths.config), "-E", str(paths.log)], log=paths.log)
    # sshd starts even when some addresses are taken (say by a stale sshd of a lab whose
    # directory is gone, which then resets every connection): refuse that here.
    listening = procs.wait_for(lambda: "Server listening" in _log_since(paths.log, start_of_log)
                               or not procs.alive(pid), timeout=5.0)
    text = _log_since(paths.log, start_of_log)
    if not listening or not procs.alive(pid) or "Address already in use" in text:
        procs.stop_pid(pid)
        busy = [ln.split(" on ")[-1].split(" ")[0] for ln in text.splitlines() if "Address already in use" in ln]
        from orchestrator.errors import RemoteError

        raise RemoteError(f"lab sshd could not listen on {', '.join(busy) or 'its addresses'}: "
                          f"{procs.tail(paths.log, 3)}",
                          hint="another process holds the port (a stale lab?): `ss -ltnp | grep 2222`")
    return pid


def _log_since(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
