"""Host-side prerequisites: which tools the substrate needs and how to get them.

`missing_host_tools()` only reports; `ensure_host_packages()` is the one place that
runs apt-get, so nothing is ever installed as a side effect of a status check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.lab.machines.errors import HostToolsMissing

# binary -> Debian package that ships it. ssh-keygen/ssh come from openssh-client,
# which the rest of the project already needs.
HOST_TOOLS: dict[str, str] = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "systemctl": "systemd",
}


class MissingTool(BaseModel):
    """One absent binary and the package that provides it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    binary: str
    package: str


def which(binary: str) -> str | None:
    """Absolute path of a binary, also looking in the sbin dirs a non-root PATH may lack."""
    for candidate in (shutil.which(binary), f"/usr/sbin/{binary}", f"/sbin/{binary}", f"/usr/bin/{binary}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_host_tools(tools: dict[str, str] | None = None) -> list[MissingTool]:
    """The host tools that are absent (empty list: everything is there). Installs nothing."""
    return [MissingTool(binary=b, package=p) for b, p in (tools or HOST_TOOLS).items() if which(b) is None]


def require_host_tools(tools: dict[str, str] | None = None) -> None:
    """Raise HostToolsMissing naming the packages when a tool is absent."""
    missing = missing_host_tools(tools)
    if missing:
        pkgs = sorted({m.package for m in missing})
        raise HostToolsMissing(
            "missing host tools: " + ", ".join(m.binary for m in missing),
            hint="apt-get install " + " ".join(pkgs) + " (or call ensure_host_packages())",
        )


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
# Each machine's systemd, journald and logind take inotify instances, all counted against root
# on the host: Debian's default of 128 stops a lab at about 35 machines ("Failed to allocate
# manager object: Too many open files" on a machine's console).
INOTIFY_PER_MACHINE = 16
INOTIFY_HEADROOM = 512


def inotify_instances_needed(machines: int) -> int:
    """The fs.inotify.max_user_instances a lab of `machines` needs, with room for the host
    and for other labs of the same size."""
    return INOTIFY_HEADROOM + INOTIFY_PER_MACHINE * machines


def ensure_inotify_instances(machines: int, *, knob: Path = INOTIFY_INSTANCES) -> int | None:
    """Raise the kernel's inotify instance limit for a lab of `machines` (never lowers it);
    returns the new value when it was raised, None when it already sufficed."""
    need = inotify_instances_needed(machines)
    try:
        have = int(knob.read_text())
        if have >= need:
            return None
        knob.write_text(f"{need}\n")
    except (OSError, ValueError) as exc:
        raise HostToolsMissing(f"cannot raise {knob} to {need} for {machines} machines ({exc})",
                               hint=f"as root: sysctl -w fs.inotify.max_user_instances={need}") from None
    return need


def ensure_host_packages(tools: dict[str, str] | None = None) -> list[str]:
    """apt-get install the packages of missing tools; returns what was installed.

    Needs root. `apt-get update` runs only when something is missing, so the call is
    cheap (and offline-safe) on a prepared host."""
    pkgs = sorted({m.package for m in missing_host_tools(tools)})
    if not pkgs:
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], env=env, timeout=1200)
    require_host_tools(tools)
    return pkgs


def run(argv: Sequence[str], *, timeout: float = 60, check: bool = True, env: dict[str, str] | None = None,
        input_text: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, bounded, capturing text output. check=True raises CalledProcessError.

    Every external call of the package goes through here so none can hang forever."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check, env=env,
                          input=input_text, cwd=cwd)
