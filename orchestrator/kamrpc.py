"""Kamailio RPC through kamcmd (the control socket), with honest error detection.

kamcmd exits 0 even when the RPC itself failed (255 only when the socket is
unreachable), so the output is checked for an error reply too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from orchestrator.errors import RemoteError
from orchestrator.procs import require_binary


def rpc(socket: Path | str, *args: str, timeout: float = 5.0) -> str:
    """Call one RPC on the Kamailio behind `socket`; RemoteError when it fails."""
    kamcmd = require_binary("kamcmd", package="kamailio")
    try:
        proc = subprocess.run([kamcmd, "-s", f"unix:{socket}", *args], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RemoteError(f"kamcmd {' '.join(args)}: no answer from {socket} in {timeout}s") from None
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or out.lower().startswith("error"):
        raise RemoteError(f"kamcmd {' '.join(args)} on {socket}: {out or f'exit {proc.returncode}'}")
    return out


def answers(socket: Path | str) -> bool:
    """True when the control socket answers core.uptime."""
    try:
        rpc(socket, "core.uptime", timeout=2.0)
    except RemoteError:
        return False
    return True
