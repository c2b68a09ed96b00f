"""Reaching the edge router's host: a small port, and its one adapter, SSH.

Steering changes the edge's dispatcher list and calls Kamailio RPCs there. callfleet
never assumes it runs on the edge host: it reaches the edge over SSH, as the estate's
SSH user with the estate's key and trust anchor (host keys always verified), and runs
`kamcmd` against the edge's local control socket there. SSH was chosen over Kamailio's
JSON-RPC over HTTP because that endpoint has no authentication of its own (whoever
reaches it could drain every site), while SSH is authenticated, verified and already
how callfleet reaches every other host. One connection is kept open for the life of
the adapter, so a poll of in-flight calls costs one SSH channel, not a handshake.
"""

from __future__ import annotations

import shlex
import threading
from typing import Protocol

from fabric import Connection
from invoke.exceptions import CommandTimedOut

from orchestrator import kamrpc
from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.estate import hostcmd
from orchestrator.estate.model import EdgeRouter, Estate
from orchestrator.fabricops.connect import connect_to, describe_failure, known_hosts_path


class EdgeShell(Protocol):
    """What steering needs from the edge host."""

    def rpc(self, *args: str) -> str:
        """One Kamailio RPC on the edge; RemoteError when it fails."""
        ...

    def read_file(self, path: str) -> str:
        """A text file of the edge host (RemoteError naming it when absent)."""
        ...

    def write_file(self, path: str, text: str) -> None:
        """Replace a text file of the edge host atomically (temp file, then rename)."""
        ...


class SshEdge:
    """The edge host over SSH (Fabric, host keys verified, one persistent connection)."""

    def __init__(self, estate: Estate, *, timeout: float = 10.0) -> None:
        if estate.edge is None:
            raise InvalidInput("the inventory names no edge_router: traffic steering needs one")
        self._edge: EdgeRouter = estate.edge
        self._sudo = hostcmd.sudo(estate)  # the edge's socket and files belong to root/kamailio
        self._address = str(self._edge.ssh_host or self._edge.address)
        self._known_hosts = known_hosts_path(estate)
        self._timeout = timeout
        self._conn: Connection = connect_to(estate=estate, address=self._address, port=self._edge.ssh_port,
                                            known_hosts=self._known_hosts, connect_timeout=timeout)
        self._lock = threading.Lock()  # one paramiko transport: channels are opened one at a time

    def _run(self, command: str) -> tuple[int, str, str]:
        where = f"edge {self._address}:{self._edge.ssh_port}"
        with self._lock:
            try:
                res = self._conn.run(command, hide=True, warn=True, in_stream=False, timeout=self._timeout)
            except CommandTimedOut:
                raise RemoteError(f"{where}: no answer within {self._timeout:g}s to {command!r}") from None
            except Exception as exc:  # paramiko/socket errors: one line naming the edge
                self._conn.close()  # the next call reconnects
                _, message = describe_failure(exc, where=where, known_hosts=self._known_hosts)
                raise RemoteError(message) from None
        return int(res.exited if res.exited is not None else -1), res.stdout, res.stderr

    def rpc(self, *args: str) -> str:
        """`kamcmd -s unix:<edge control socket> ARGS` on the edge host."""
        argv = kamrpc.kamcmd_argv(self._edge.control_socket, *args)
        rc, out, err = self._run(self._sudo + shlex.join(argv))
        return kamrpc.check_reply(out + err, rc, args=args, where=f"edge {self._address}")

    def read_file(self, path: str) -> str:
        """`cat PATH` on the edge host."""
        rc, out, err = self._run(f"{self._sudo}cat -- {shlex.quote(path)}")
        if rc != 0:
            raise RemoteError(f"edge {self._address}: cannot read {path}: {err.strip() or f'exit {rc}'}")
        return out

    def write_file(self, path: str, text: str) -> None:
        """Write a temp file beside PATH, then rename it over PATH (the edge never reads half a file)."""
        if not text.endswith("\n"):
            text += "\n"  # a text file ends with a newline (and the heredoc's terminator needs its own line)
        tmp = f"{path}.callfleet.tmp"
        inner = f"cat > {shlex.quote(tmp)} && mv -f -- {shlex.quote(tmp)} {shlex.quote(path)}"
        script = f"{self._sudo}sh -c {shlex.quote(inner)} <<'CALLFLEET_EOF'\n{text}CALLFLEET_EOF\n"
        if "\nCALLFLEET_EOF\n" in f"\n{text}":
            raise InvalidInput("refusing to write a file containing the heredoc terminator")
        rc, _, err = self._run(script)
        if rc != 0:
            raise RemoteError(f"edge {self._address}: cannot write {path}: {err.strip() or f'exit {rc}'}")

    def close(self) -> None:
        """Close the SSH connection (it reopens on the next call)."""
        with self._lock:
            self._conn.close()

