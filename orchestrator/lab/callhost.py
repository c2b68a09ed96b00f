"""A lab call-server host: its directory root, release, arguments and service manager."""

from __future__ import annotations

import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

from orchestrator.errors import RemoteError
from orchestrator.estate.model import Estate, Host
from orchestrator.lab.topology import metrics_listen

CTL_SCRIPT = "bin/callserverctl"


def ctl_script_source() -> Path:
    """The packaged callserverctl script."""
    return Path(str(files("orchestrator.lab") / "files" / "callserverctl.sh"))


def host_args(estate: Estate, host: Host) -> list[str]:
    """Kamailio arguments specific to this host (one per line in host.args).

    METRICS_LISTEN is a define, not a `-l`: a release without the metrics endpoint
    ignores it, where an extra TCP listener would clash with its `disable_tcp=yes`."""
    args = ["-l", f"udp:{host.address}:{host.sip_port}", "-A", f"METRICS_LISTEN={metrics_listen(host.address)}"]
    for n in estate.numbers:
        args += ["-A", f'PSAP_{n.number}="{n.psap_uri}"']
    return args


def prepare(estate: Estate, host: Host, *, bundle: Path) -> None:
    """Lay out the host root with `bundle` as its current release (idempotent)."""
    root = Path(host.root)
    for sub in ("bin", "releases", "run", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    script = root / CTL_SCRIPT
    shutil.copyfile(ctl_script_source(), script)
    script.chmod(0o755)
    (root / "host.args").write_text("\n".join(host_args(estate, host)) + "\n")
    target = root / "releases" / host.release
    if not target.exists():
        shutil.copytree(bundle, target)
    current = root / "current"
    if not current.is_symlink():
        tmp = root / ".current.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("releases") / host.release)
        tmp.replace(current)


def ctl(host: Host, action: str, *, timeout: float = 15.0) -> str:
    """Run the host's service manager locally (the lab's equivalent of systemctl)."""
    script = Path(host.root) / CTL_SCRIPT
    proc = subprocess.run([str(script), action], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 and action not in ("status",):
        raise RemoteError(f"{host.name}: callserverctl {action} failed: "
                          f"{(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def pidfile(host: Host) -> Path:
    """Where the host's Kamailio writes its pid."""
    return Path(host.root) / "run" / "kamailio.pid"


def control_socket(host: Host) -> Path:
    """The host's Kamailio control socket."""
    return Path(host.root) / "run" / "ctl.sock"
