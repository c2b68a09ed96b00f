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

from orchestrator import procs
from orchestrator.estate.model import Host


class CheckResult(BaseModel):
    """One check on one host."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str
    check: str
    ok: bool
    detail: str


def kamailio_running(th: Any, host: Host, expected_release: str) -> tuple[bool, str]:
    """The pidfile names a live kamailio process."""
    pid = th.run(f"cat {host.root}/run/kamailio.pid").stdout.strip()
    if not pid.isdigit():
        return False, "no pidfile"
    cmd = th.run(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    return "kamailio" in cmd, f"pid {pid}"


def listening(th: Any, host: Host, expected_release: str) -> tuple[bool, str]:
    """Kamailio listens for SIP on the host's own address."""
    sock = th.socket(f"udp://{host.address}:{host.sip_port}")
    return bool(sock.is_listening), f"udp {host.address}:{host.sip_port}"


def current_release(th: Any, host: Host, expected_release: str) -> tuple[bool, str]:
    """`current` points at releases/<expected> and its manifest says so."""
    link = th.file(f"{host.root}/current")
    target = Path(link.linked_to).name
    manifest = th.run(f"grep -x 'version: {expected_release}' {host.root}/current/manifest.yaml")
    return target == expected_release and manifest.rc == 0, f"current -> {target}"


def control_socket(th: Any, host: Host, expected_release: str) -> tuple[bool, str]:
    """The control socket answers, and the running release is the expected one."""
    out = th.run(f"kamcmd -s unix:{host.root}/run/ctl.sock cfg.get callfleet release")
    running = out.stdout.strip()
    return out.rc == 0 and running == expected_release, f"running {running or out.stderr.strip()!r}"


CHECKS: dict[str, Callable[[Any, Host, str], tuple[bool, str]]] = {
    "kamailio running": kamailio_running,
    "listening on host address": listening,
    "current release": current_release,
    "control socket answers": control_socket,
}


def testinfra_host(inventory: Path, host: Host) -> Any:
    """A testinfra host over SSH through the ansible backend (inventory's ssh args)."""
    import testinfra

    procs.ensure_venv_bin_on_path()
    return testinfra.get_host(f"ansible://{host.name}", ansible_inventory=str(inventory))


def check_host(inventory: Path, host: Host, expected_release: str) -> list[CheckResult]:
    """Run every check on one host; an SSH failure is a failed check naming the host."""
    try:
        th = testinfra_host(inventory, host)
        results = []
        for name, fn in CHECKS.items():
            ok, detail = fn(th, host, expected_release)
            results.append(CheckResult(host=host.name, check=name, ok=ok, detail=detail))
        return results
    except Exception as exc:  # testinfra raises plain RuntimeError/AssertionError on SSH trouble
        first = str(exc).strip().splitlines()
        return [CheckResult(host=host.name, check="ssh", ok=False,
                            detail=first[-1] if first else type(exc).__name__)]


def check_hosts(inventory: Path, hosts: Sequence[Host], expected_release: str) -> list[CheckResult]:
    """Check several hosts: the first alone (it loads the inventory once, through
    `ansible-inventory`, for testinfra's cached runner), then the rest in parallel."""
    if not hosts:
        return []
    first = check_host(inventory, hosts[0], expected_release)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts) - 1))) as pool:
        rest = pool.map(lambda h: check_host(inventory, h, expected_release), hosts[1:])
    return first + [r for rs in rest for r in rs]
