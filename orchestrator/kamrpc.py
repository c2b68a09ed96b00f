"""Kamailio RPC through kamcmd (the control socket), with honest error detection.

kamcmd exits 0 even when the RPC itself failed (255 only when the socket is
unreachable), so the output is checked for an error reply too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from orchestrator.errors import RemoteError
from orchestrator.procs import require_binary


def kamcmd_argv(socket: Path | str, *args: str, kamcmd: str = "kamcmd") -> list[str]:
    """The kamcmd command line for one RPC (always with -s: kamcmd's default socket is not ours)."""
    return [kamcmd, "-s", f"unix:{socket}", *args]


def check_reply(out: str, returncode: int, *, args: tuple[str, ...], where: str) -> str:
    """The RPC's output, or RemoteError: kamcmd exits 0 on RPC errors, so the text is checked too."""
    out = out.strip()
    if returncode != 0 or out.lower().startswith("error"):
        raise RemoteError(f"kamcmd {' '.join(args)} on {where}: {out or f'exit {returncode}'}")
    return out


def rpc(socket: Path | str, *args: str, timeout: float = 5.0) -> str:
    """Call one RPC on the Kamailio behind a local `socket`; RemoteError when it fails."""
    kamcmd = require_binary("kamcmd", package="kamailio")
    try:
        proc = subprocess.run(kamcmd_argv(socket, *args, kamcmd=kamcmd), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RemoteError(f"kamcmd {' '.join(args)}: no answer from {socket} in {timeout}s") from None
    return check_reply(proc.stdout + proc.stderr, proc.returncode, args=args, where=str(socket))


def answers(socket: Path | str) -> bool:
    """True when the control socket answers core.uptime."""
    try:
        rpc(socket, "core.uptime", timeout=2.0)
    except RemoteError:
        return False
    return True
