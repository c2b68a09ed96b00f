"""Call-server host checks, run with testinfra's ansible backend over SSH.

The same functions serve the orchestrator (post-upgrade checks, expecting the new
release) and the testinfra suite in tests/hosts/ (run by hand or in CI).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.estate import hostcmd
from orchestrator.estate.model import Estate, Host
from orchestrator.estate.ssh import ssh_trust


class CheckResult(BaseModel):
    """One check on one host."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str
    check: str
    ok: bool
    detail: str


def kamailio_running(th: Any, estate: Estate, host: Host, expected_release: str) -> tuple[bool, str]:
    """The service's main process is a live kamailio."""
    pid = th.run(hostcmd.main_pid(estate, host)).stdout.strip()
    if not pid.isdigit() or pid == "0":
        return False, "not running (no main pid)"
    cmd = th.run(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    return "kamailio" in cmd, f"pid {pid}"


def listening(th: Any, estate: Estate, host: Host, expected_release: str) -> tuple[bool, str]:
    """Kamailio listens for SIP on the host's own address."""
    sock = th.socket(f"udp://{host.address}:{host.sip_port}")
    return bool(sock.is_listening), f"udp {host.address}:{host.sip_port}"


def current_release(th: Any, estate: Estate, host: Host, expected_release: str) -> tuple[bool, str]:
    """`current` points at releases/<expected> and its manifest says so."""
    link = th.file(f"{host.root}/current")
    target = Path(link.linked_to).name
    manifest = th.run(f"grep -x 'version: {expected_release}' {host.root}/current/manifest.yaml")
    return target == expected_release and manifest.rc == 0, f"current -> {target}"


def control_socket(th: Any, estate: Estate, host: Host, expected_release: str) -> tuple[bool, str]:
    """The control socket answers, and the running release is the expected one."""
    out = th.run(f"{hostcmd.kamcmd(estate, host)} cfg.get callfleet release")
    running = out.stdout.strip()
    return out.rc == 0 and running == expected_release, f"running {running or out.stderr.strip()!r}"


CHECKS: dict[str, Callable[[Any, Estate, Host, str], tuple[bool, str]]] = {
    "kamailio running": kamailio_running,
    "listening on host address": listening,
    "current release": current_release,
    "control socket answers": control_socket,
}


def testinfra_host(estate: Estate, host: Host) -> Any:
    """A testinfra host over OpenSSH, built from the estate: its address, user, key and trust
    anchor, with callfleet's host-key options first (testinfra's ansible backend would take
    ssh arguments from inventory variables and read ~/.ssh/config)."""
    import testinfra

    trust = ssh_trust(estate)
    addr = f"[{host.address}]" if host.address.version == 6 else str(host.address)
    # testinfra %-formats the command line: %C (ssh's connection hash) must reach ssh as is.
    kwargs: dict[str, Any] = {"ssh_extra_args": trust.openssh_args(),
                              "controlpath": f"{trust.control_dir()}/ti-%%C"}
    if estate.ssh_private_key:
        kwargs["ssh_identity_file"] = str(Path(estate.ssh_private_key).expanduser())
    return testinfra.get_host(f"ssh://{estate.ssh_user}@{addr}:{host.ssh_port}", **kwargs)


def check_host(estate: Estate, host: Host, expected_release: str) -> list[CheckResult]:
    """Run every check on one host; an SSH failure is a failed check naming the host."""
    try:
        th = testinfra_host(estate, host)
        results = []
        for name, fn in CHECKS.items():
            ok, detail = fn(th, estate, host, expected_release)
            results.append(CheckResult(host=host.name, check=name, ok=ok, detail=detail))
        return results
    except Exception as exc:  # testinfra raises plain RuntimeError/AssertionError on SSH trouble
        first = str(exc).strip().splitlines()
        return [CheckResult(host=host.name, check="ssh", ok=False,
                            detail=first[-1] if first else type(exc).__name__)]


def check_hosts(estate: Estate, hosts: Sequence[Host], expected_release: str) -> list[CheckResult]:
    """Check several hosts, all in parallel (one SSH master each)."""
    if not hosts:
        return []
    ssh_trust(estate)  # a missing known_hosts file is the inventory's fault: InvalidInput, not N failed checks
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(hosts)))) as pool:
        results = pool.map(lambda h: check_host(estate, h, expected_release), hosts)
    return [r for rs in results for r in rs]
