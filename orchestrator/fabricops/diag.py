"""`diag`: what each call server of a site really runs, its memory, its calls and its log.

One SSH command per host runs every probe (kamcmd over the host's control socket,
tail of the log) and prints each answer under a marker line carrying a random
token, so nothing a log line contains can be mistaken for a section boundary.
kamcmd exits 0 on RPC errors: an answer starting with "error" is an error.
"""

from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput
from orchestrator.estate import hostcmd
from orchestrator.estate.model import Estate, Host
from orchestrator.fabricops.run import HostRun, run_on_hosts

# section name -> kamcmd arguments (None: the log tail, built per host)
_RPCS: dict[str, tuple[str, ...]] = {
    "release": ("cfg.get", "callfleet", "release"),
    "uptime": ("core.uptime",),
    "shmmem": ("core.shmmem",),
    "dialogs": ("stats.get_statistics", "dialog:"),
}
_SHM_FIELDS = ("total", "free", "used", "real_used", "max_used", "fragments")
_DIALOG_FIELDS = ("active", "early", "expired", "failed", "processed")


class ShmMem(BaseModel):
    """Kamailio shared memory (core.shmmem), in bytes; a leak per call shows in real_used."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    total: int
    free: int
    used: int
    real_used: int
    max_used: int
    fragments: int


class DialogCounts(BaseModel):
    """The dialog module's counters: calls now in progress, and since start."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    active: int
    early: int
    expired: int
    failed: int
    processed: int


class HostDiag(BaseModel):
    """Diagnostics of one host; what could not be read is None and explained in errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str
    address: str
    inventory_release: str
    running_release: str | None = None
    uptime_s: int | None = None
    shmmem: ShmMem | None = None
    dialogs: DialogCounts | None = None
    log_tail: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Everything was read."""
        return not self.errors


class SiteDiag(BaseModel):
    """Diagnostics of every host of a site."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    site: str
    hosts: tuple[HostDiag, ...]

    @property
    def ok(self) -> bool:
        """Every host answered every probe."""
        return all(h.ok for h in self.hosts)


class RpcError(ValueError):
    """An RPC answer that is an error or cannot be parsed."""


def _braced_ints(text: str, what: str) -> dict[str, int]:
    """`key: 123` lines of a kamcmd structure answer."""
    values = {m[1]: int(m[2]) for m in re.finditer(r"^\s*(\w+):\s*(-?\d+)\s*$", text, re.MULTILINE)}
    if not values:
        raise RpcError(f"{what}: unexpected answer {text.strip()[:80]!r}")
    return values


def parse_shmmem(text: str) -> ShmMem:
    """Parse `kamcmd core.shmmem` (a `{ total: N ... }` structure)."""
    values = _braced_ints(text, "core.shmmem")
    missing = [f for f in _SHM_FIELDS if f not in values]
    if missing:
        raise RpcError(f"core.shmmem: no {', '.join(missing)} in the answer")
    return ShmMem(**{f: values[f] for f in _SHM_FIELDS})


def parse_uptime(text: str) -> int:
    """Seconds since Kamailio started, from `kamcmd core.uptime`."""
    values = _braced_ints(text, "core.uptime")
    if "uptime" not in values:
        raise RpcError("core.uptime: no uptime in the answer")
    return values["uptime"]


def parse_dialog_stats(text: str) -> DialogCounts:
    """Parse `kamcmd stats.get_statistics dialog:` (`dialog:active_dialogs = N` lines)."""
    values = {m[1]: int(m[2]) for m in re.finditer(r"^dialog:(\w+)_dialogs\s*=\s*(\d+)\s*$", text, re.MULTILINE)}
    missing = [f for f in _DIALOG_FIELDS if f not in values]
    if missing:
        raise RpcError(f"dialog statistics: no {', '.join(missing)} (is the dialog module loaded?)")
    return DialogCounts(**{f: values[f] for f in _DIALOG_FIELDS})


def diag_command(estate: Estate, host: Host, *, token: str, log_lines: int) -> str:
    """The shell command printing every probe of `host` under `@@<token> <section> <rc>` markers
    (the marker follows its section, so it carries the section's exit status)."""
    kamcmd = hostcmd.kamcmd(estate, host)
    parts = [f"{kamcmd} {' '.join(args)} 2>&1; echo \"@@{token} {name} $?\"" for name, args in _RPCS.items()]
    parts.append(f"{hostcmd.log_tail(estate, host, log_lines)} 2>&1; echo \"@@{token} log $?\"")
    return "; ".join(parts)


def split_sections(stdout: str, *, token: str) -> dict[str, tuple[int, str]]:
    """Section name -> (exit status, output) from the output of diag_command."""
    sections: dict[str, tuple[int, str]] = {}
    body: list[str] = []
    marker = re.compile(rf"^@@{re.escape(token)} (\w+) (\d+)$")
    for line in stdout.splitlines():
        m = marker.match(line)
        if m:
            sections[m[1]] = (int(m[2]), "\n".join(body))
            body = []
        else:
            body.append(line)
    return sections


def _rpc_text(sections: dict[str, tuple[int, str]], name: str) -> str:
    if name not in sections:
        raise RpcError(f"{name}: no answer (the diagnostics stopped early)")
    rc, text = sections[name]
    # kamcmd: 255 when the socket is unreachable, 0 with an "error: ..." answer when the RPC failed.
    if rc != 0 or text.strip().lower().startswith("error"):
        raise RpcError(f"{name}: {text.strip() or f'exit {rc}'}")
    return text


def host_diag(host: Host, run: HostRun, *, token: str) -> HostDiag:
    """Build one host's diagnostics from its run; each failed probe becomes one error line."""
    base = {"host": host.name, "address": str(host.address), "inventory_release": host.release}
    if run.failure is not None:
        return HostDiag(**base, errors=(run.error or f"{host.name}: {run.failure}",))
    sections = split_sections(run.stdout, token=token)
    found: dict[str, object] = {}
    errors: list[str] = []
    parsers = {"release": lambda t: t.strip(), "uptime": parse_uptime, "shmmem": parse_shmmem,
               "dialogs": parse_dialog_stats}
    fields = {"release": "running_release", "uptime": "uptime_s", "shmmem": "shmmem", "dialogs": "dialogs"}
    for name, parse in parsers.items():
        try:
            found[fields[name]] = parse(_rpc_text(sections, name))
        except RpcError as exc:
            errors.append(f"{host.name}: {exc}")
    if "log" in sections and sections["log"][0] == 0:
        found["log_tail"] = tuple(sections["log"][1].splitlines())
    else:
        errors.append(f"{host.name}: log: {sections.get('log', (0, 'no answer'))[1].strip()}")
    return HostDiag.model_validate({**base, **found, "errors": tuple(errors)})


def diag(*, estate: Estate, site: str, log_lines: int = 20, timeout: float = 30.0) -> SiteDiag:
    """Collect from every host of `site`, in parallel over SSH (host keys checked): the
    running release, uptime, shared memory, dialog counters and the last log lines."""
    try:
        hosts = estate.site(site).hosts
    except KeyError as exc:
        raise InvalidInput(str(exc.args[0])) from None
    token = secrets.token_hex(8)
    # The command names the host's root. In production every host shares one root
    # (/opt/callserver), so a site is one ThreadingGroup; in the lab each host has its
    # own root, so the groups of hosts sharing a command run side by side.
    by_command: dict[str, list[Host]] = {}
    for h in hosts:
        by_command.setdefault(diag_command(estate, h, token=token, log_lines=log_lines), []).append(h)
    with ThreadPoolExecutor(max_workers=min(16, len(by_command))) as pool:
        reports = list(pool.map(lambda item: run_on_hosts(estate=estate, hosts=item[1], command=item[0],
                                                          timeout=timeout), by_command.items()))
    runs = {r.host: r for report in reports for r in report.results}
    return SiteDiag(site=site, hosts=tuple(host_diag(h, runs[h.name], token=token) for h in hosts))
