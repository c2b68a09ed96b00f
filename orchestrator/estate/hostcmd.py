"""What callfleet runs on a call-server host to ask its Kamailio: the one place for those
host-side facts (where the control socket is, kamcmd through sudo when the estate's SSH
user is not root, the service's main pid, its log), for Fabric, testinfra and the gate.

`kamcmd` exits 0 on RPC errors (255 only when the socket is unreachable): callers check
the output for `error` too (orchestrator/kamrpc.check_reply).
"""

from __future__ import annotations

import shlex

from orchestrator.estate.model import Estate, Host

# Debian's kamailio.service keeps its runtime directory here; callfleet's drop-in puts the
# control socket in it (the role's callserver_ctl_socket).
SYSTEMD_CTL_SOCKET = "/run/kamailio/kamailio_ctl"
SYSTEMD_UNIT = "kamailio"


def sudo(estate: Estate) -> str:
    """`sudo -n ` when commands need root and the SSH user is not root (never prompts)."""
    return "sudo -n " if estate.become and estate.ssh_user != "root" else ""


def ctl_socket(estate: Estate, host: Host) -> str:
    """The host's Kamailio control socket."""
    return SYSTEMD_CTL_SOCKET


def kamcmd(estate: Estate, host: Host) -> str:
    """The kamcmd invocation for the host's control socket (append the RPC and its arguments)."""
    return f"{sudo(estate)}kamcmd -s {shlex.quote('unix:' + ctl_socket(estate, host))}"


def main_pid(estate: Estate, host: Host) -> str:
    """A shell expression printing the pid of the host's running Kamailio main process."""
    return f"systemctl show -p MainPID --value {SYSTEMD_UNIT}"


def log_tail(estate: Estate, host: Host, lines: int) -> str:
    """A shell command printing the last `lines` lines of the call server's log."""
    return f"{sudo(estate)}journalctl -u {SYSTEMD_UNIT} -n {int(lines)} --no-pager -o cat"
