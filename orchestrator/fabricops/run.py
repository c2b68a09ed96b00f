"""Run one shell command on many hosts in parallel (Fabric ThreadingGroup), per-host results.

A host that cannot run the command (host key refused, unreachable, authentication,
timeout) is a result like the others, carrying the reason and naming the host: one
bad host never hides what the other hosts answered.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from fabric import Connection, ThreadingGroup
from fabric.exceptions import GroupException
from invoke.exceptions import CommandTimedOut
from invoke.runners import Result
from pydantic import BaseModel, ConfigDict, computed_field

from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.estate.model import Estate, Host
from orchestrator.fabricops.connect import FailureKind, connection, describe_failure, host_label, known_hosts_path

# Exit code of a host that could not run the command at all (errors.RemoteError).
SSH_FAILURE_EXIT = RemoteError.exit_code


class HostRun(BaseModel):
    """What one host did with the command."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str
    site: str
    address: str
    exit_code: int | None = None  # None: the command did not run to completion
    stdout: str = ""
    stderr: str = ""
    failure: FailureKind | None = None
    error: str | None = None  # one line naming the host, when failure is set

    @property
    def ok(self) -> bool:
        """The command ran and exited 0."""
        return self.failure is None and self.exit_code == 0


class RunReport(BaseModel):
    """One command on a set of hosts, results in the order the hosts were given."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    command: str
    results: tuple[HostRun, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        """The worst outcome: 4 when any host could not run the command (SSH, host key,
        timeout), else the highest exit status the command returned on a host."""
        if any(r.failure is not None for r in self.results):
            return SSH_FAILURE_EXIT
        return max((r.exit_code or 0 for r in self.results), default=0)

    @property
    def failed(self) -> tuple[HostRun, ...]:
        """Hosts where the command did not run, or exited non-zero."""
        return tuple(r for r in self.results if not r.ok)

    def result(self, host: str) -> HostRun:
        """The result of the host called `host`."""
        for r in self.results:
            if r.host == host:
                return r
        raise KeyError(f"no result for host {host!r}")

    def raise_for_failures(self) -> None:
        """RemoteError naming every host that failed, with its reason (for callers that
        need all hosts to succeed, like the reconnection drill)."""
        if self.failed:
            reasons = "; ".join(r.error or f"{r.host}: exit {r.exit_code}" for r in self.failed)
            raise RemoteError(f"{self.command!r} failed on {len(self.failed)} host(s): {reasons}")


def select_hosts(*, estate: Estate, sites: Iterable[str] = (), hosts: Iterable[str] = (),
                 all_hosts: bool = False) -> tuple[Host, ...]:
    """The hosts named by sites and host names (or all), in estate order, each once."""
    sites, hosts = list(sites), list(hosts)
    if all_hosts and (sites or hosts):
        raise InvalidInput("--all covers every host: do not combine it with --site or --host")
    if not (all_hosts or sites or hosts):
        raise InvalidInput("choose the hosts: --site S, --host H (both repeatable) or --all")
    try:
        chosen = {h.name for s in sites for h in estate.site(s).hosts} | {estate.host(h).name for h in hosts}
    except KeyError as exc:
        raise InvalidInput(str(exc.args[0])) from None
    return tuple(h for h in estate.hosts if all_hosts or h.name in chosen)


def _host_run(host: Host, outcome: object, *, known_hosts: Path, timeout: float, elapsed: float) -> HostRun:
    base = {"host": host.name, "site": host.site, "address": str(host.address)}
    if isinstance(outcome, Result) and (outcome.exited is None or outcome.exited < 0) and elapsed >= timeout:
        # invoke races its timer against the channel close: when the close wins, the
        # result carries no exit status instead of CommandTimedOut; same cause, same name.
        return HostRun(**base, stdout=outcome.stdout, stderr=outcome.stderr, failure="timeout",
                       error=f"{host.name}: the command did not finish within {timeout:g}s "
                             "(it may still be running there)")
    if isinstance(outcome, CommandTimedOut):
        partial = outcome.result
        return HostRun(**base, stdout=partial.stdout, stderr=partial.stderr, failure="timeout",
                       error=f"{host.name}: the command did not finish within {timeout:g}s "
                             "(it may still be running there)")
    if isinstance(outcome, BaseException):
        kind, message = describe_failure(outcome, where=host_label(host), known_hosts=known_hosts)
        return HostRun(**base, failure=kind, error=message)
    if not isinstance(outcome, Result):
        return HostRun(**base, failure="ssh", error=f"{host.name}: no result from Fabric")
    if outcome.exited is None or outcome.exited < 0:
        # paramiko's -1: the session closed without an exit status (the command was
        # killed by a signal, or sshd went away): never count that as success.
        return HostRun(**base, stdout=outcome.stdout, stderr=outcome.stderr, failure="no-exit-status",
                       error=f"{host.name}: the command ended without an exit status (killed by a signal?)")
    return HostRun(**base, exit_code=outcome.exited, stdout=outcome.stdout, stderr=outcome.stderr)


def _run_batch(batch: Sequence[tuple[Host, Connection]], *, known_hosts: Path, command: str,
               timeout: float) -> list[HostRun]:
    group = ThreadingGroup.from_connections([conn for _, conn in batch])
    started = time.monotonic()
    try:
        # warn: a non-zero exit is a result, not an exception; in_stream=False: worker
        # threads must never read our stdin; hide: output is returned, not echoed.
        outcomes = group.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    except GroupException as exc:  # some hosts raised: exc.result still holds every host
        outcomes = exc.result
    finally:
        group.close()
    elapsed = time.monotonic() - started
    return [_host_run(host, outcomes.get(conn), known_hosts=known_hosts, timeout=timeout, elapsed=elapsed)
            for host, conn in batch]


def run_on_hosts(*, estate: Estate, hosts: Sequence[Host], command: str, timeout: float = 60.0,
                 connect_timeout: float = 10.0, parallel: int = 32) -> RunReport:
    """Run `command` (a shell command line, like ssh's) on `hosts` in parallel, `parallel`
    hosts at a time; host keys are checked against the estate's known_hosts.

    Never raises for a host's failure: each one is in its result (see RunReport.exit_code
    and raise_for_failures). Raises InvalidInput when the known_hosts file is missing."""
    if not command.strip():
        raise InvalidInput("no command to run")
    known_hosts = known_hosts_path(estate)
    pairs = [(h, connection(estate=estate, host=h, known_hosts=known_hosts, connect_timeout=connect_timeout))
             for h in hosts]
    results: list[HostRun] = []
    for start in range(0, len(pairs), max(1, parallel)):
        results += _run_batch(pairs[start:start + max(1, parallel)], known_hosts=known_hosts, command=command,
                              timeout=timeout)
    return RunReport(command=command, results=tuple(results))
