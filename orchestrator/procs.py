"""Process supervision: start detached daemons, check them, stop them by pid.

Lab daemons outlive `callfleet lab up`, so they are reparented to PID 1, which may
reap them late: a dead process can linger as a zombie (state Z) for a while. Every
liveness check here therefore reads /proc/<pid>/stat and treats Z as dead, and also
checks the command line so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.errors import RemoteError, ToolMissing


def require_binary(name: str, *, package: str) -> str:
    """Absolute path of a binary, or ToolMissing naming the Debian package."""
    import shutil

    # /usr/sbin is often off a non-root PATH; kamailio, kamcmd and sshd live there.
    for candidate in (shutil.which(name), f"/usr/sbin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissing(f"{name} is not installed", hint=f"apt-get install {package} (or `make deps`)")


def ensure_venv_bin_on_path() -> None:
    """Put this Python's bin directory on PATH: ansible-runner and testinfra run
    `ansible`/`ansible-inventory` by name, which must be the venv's copies even when
    callfleet was started by absolute path without activating the venv."""
    import sys

    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def alive(pid: int | None, *, expect: str | None = None) -> bool:
    """True when pid runs (not a zombie) and, if given, its command line contains `expect`."""
    if not pid or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):
        return False
    if expect is not None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return expect in cmdline
    return True


def start_time(pid: int | None) -> int | None:
    """When the process started (clock ticks since boot, /proc/<pid>/stat field 22), or None.

    With the pid it names one process for good: a pid reused by a later process has
    another start time, so a stale lease or lock is never mistaken for a live one."""
    if not pid or pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 of stat(5); fields[0] here is field 3 (state)


def read_pidfile(path: Path) -> int | None:
    """The pid in a pidfile, or None when absent or garbage."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def spawn(argv: Sequence[str], *, log: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> int:
    """Start a detached daemon (own session, stdin closed, output to `log`); returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                cwd=cwd, env=env, start_new_session=True)
    return proc.pid


def wait_for(check: Callable[[], bool], *, timeout: float, interval: float = 0.02) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop_pid(pid: int | None, *, expect: str | None = None, timeout: float = 5.0,
             sig: int = signal.SIGTERM) -> None:
    """Signal a process and wait until it is gone; SIGKILL after `timeout`.

    Daemons here lead their own process group (spawn uses a new session): the group
    is killed at the end too, so no worker outlives its main process."""
    if pid is None or pid <= 0:
        return
    if alive(pid, expect=expect):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if not wait_for(lambda: not alive(pid), timeout=timeout):
            _killpg(pid)
            if not wait_for(lambda: not alive(pid), timeout=2.0):
                raise RemoteError(f"process {pid} did not stop")
    _killpg(pid)


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


_given_lock = threading.Lock()
_given: dict[int, float] = {}


def free_udp_port(address: str) -> int:
    """A UDP port free on `address` right now (for SIPp's local and control ports).

    The kernel may hand the same free port to two threads that ask in quick succession
    (we close the socket before SIPp binds it): ports given out in the last minute are
    skipped, so concurrent probes never race for one."""
    with _given_lock:
        now = time.monotonic()
        for port, when in list(_given.items()):
            if now - when > 60:
                del _given[port]
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((address, 0))
                port = int(s.getsockname()[1])
            if port not in _given:
                _given[port] = now
                return port
        raise RemoteError(f"no free UDP port on {address}")


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
