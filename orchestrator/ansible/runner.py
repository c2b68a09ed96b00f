"""ansible-runner adapter with safe defaults.

ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False unless told otherwise, and writes
env/envvars only when absent (a stale file then beats `envvars=`): this adapter
always forces host-key checking on, puts the estate's trust options first on every
ssh command line (`SshTrust`: its known_hosts, strict checking, no ssh config file)
and suppresses env files. ansible-runner takes a relative inventory string for
inventory *text* (one host named after the path, every play a successful no-op), so
the path is resolved here, and a run that did not act on exactly the hosts the caller
expected is an error, never a success. Events are consumed as typed objects
(event_handler), never scraped from stdout.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator import procs
from orchestrator.errors import InvalidInput
from orchestrator.estate.ssh import SshTrust

HostStatus = Literal["ok", "changed", "failed", "unreachable", "skipped"]


class TaskEvent(BaseModel):
    """One per-host task outcome, as ansible-runner reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str
    task: str
    status: HostStatus
    message: str = ""


class HostResult(BaseModel):
    """The recap of one host."""

    model_config = ConfigDict(extra="forbid")
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    last_error: str = ""


class RunResult(BaseModel):
    """The outcome of one playbook or module run."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    status: str
    rc: int
    hosts: dict[str, HostResult]
    canceled: bool = False

    @property
    def succeeded(self) -> bool:
        """Every host finished with no failure and no unreachable."""
        return self.rc == 0 and not any(h.failed or h.unreachable for h in self.hosts.values())

    def failures(self) -> dict[str, str]:
        """Host -> first-line reason, for hosts that failed or were unreachable."""
        return {name: h.last_error or ("unreachable" if h.unreachable else "failed")
                for name, h in self.hosts.items() if h.failed or h.unreachable}


_EVENT_STATUS: dict[str, HostStatus] = {
    "runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


def safe_envvars(control_dir: Path, trust: SshTrust) -> dict[str, str]:
    """Environment every run gets: host keys checked, UTF-8, short ControlPath, pipelining."""
    return {
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        # Ansible's default ssh_args minus -C (compression only costs CPU on a local network).
        "ANSIBLE_SSH_ARGS": f"{trust.openssh_args()} -o ControlMaster=auto -o ControlPersist=60s",
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_FORKS": "12",
    }


HOST_KEY_MARKERS = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
                    "No ED25519 host key is known", "host key for")


def _message(res: dict[str, Any]) -> str:
    msg = str(res.get("msg") or res.get("stderr") or res.get("reason") or "")
    if msg == "non-zero return code" and (res.get("stderr") or res.get("stdout")):
        # a failed command says more on its stderr than Ansible's generic message
        msg = f"{res.get('stderr') or res.get('stdout')}".strip()
    if any(marker in msg for marker in HOST_KEY_MARKERS):
        return "Host key verification failed: the host's SSH key does not match known_hosts"
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip().strip("@")]
    return lines[0][:500] if lines else ""


def _inventory_file(inventory: Path) -> Path:
    path = Path(inventory).absolute()
    if not path.exists():
        raise InvalidInput(f"{path}: no such inventory")
    return path


def _check_hosts(result: RunResult, expected: frozenset[str], inventory: Path) -> None:
    """A run acted on exactly the expected hosts, or it is invalid input (exit 2)."""
    seen = set(result.hosts)
    extra = sorted(seen - expected)
    if extra:
        raise InvalidInput(f"{inventory}: Ansible acted on hosts the estate does not name for this step: "
                           f"{', '.join(extra)}")
    missing = sorted(expected - seen)
    if missing and (result.succeeded or not seen):
        raise InvalidInput(f"{inventory}: the inventory matched no play for {', '.join(missing)}: "
                           "nothing was done on them",
                           hint="check that the inventory lists these hosts under their site group")


def run(*, inventory: Path, trust: SshTrust, playbook: Path | None = None, module: str | None = None,
        module_args: str = "", host_pattern: str = "all", limit: str | None = None,
        extra_vars: dict[str, Any] | None = None, check: bool = False,
        on_event: Callable[[TaskEvent], None] | None = None,
        cancel: threading.Event | None = None, private_dir: Path | None = None,
        expect_hosts: frozenset[str] | None = None) -> RunResult:
    """Run a playbook or a single module through ansible-runner's Python API.

    `expect_hosts`: the hosts the estate says this run must act on; any other outcome
    raises InvalidInput (an empty match is the classic silent no-op)."""
    import ansible_runner

    inventory = _inventory_file(inventory)
    procs.ensure_venv_bin_on_path()
    private = private_dir or Path(tempfile.mkdtemp(prefix="callfleet-ansible-"))
    private.mkdir(parents=True, exist_ok=True)
    control_dir = trust.control_dir()
    hosts: dict[str, HostResult] = {}

    def handler(event: dict[str, Any]) -> bool:
        status = _EVENT_STATUS.get(event.get("event", ""))
        data = event.get("event_data", {})
        host = data.get("host")
        if status is None or host is None:
            return True
        res = data.get("res", {}) or {}
        if status == "ok" and res.get("changed"):
            status = "changed"
        hr = hosts.setdefault(host, HostResult())
        setattr(hr, status, getattr(hr, status) + 1)
        if status in ("failed", "unreachable") and not data.get("ignore_errors"):
            hr.last_error = _message(res) or status
        if on_event is not None:
            on_event(TaskEvent(host=host, task=str(data.get("task", "")), status=status,
                               message=_message(res)))
        return True

    cmdline = "--check --diff" if check else None
    kwargs: dict[str, Any] = dict(
        private_data_dir=str(private), inventory=str(inventory), envvars=safe_envvars(control_dir, trust),
        suppress_env_files=True, rotate_artifacts=5, quiet=True, event_handler=handler,
        cancel_callback=cancel.is_set if cancel is not None else None,
        extravars=extra_vars or {}, limit=limit, cmdline=cmdline,
    )
    if playbook is not None:
        r = ansible_runner.run(playbook=str(playbook.resolve()), **kwargs)
    else:
        r = ansible_runner.run(module=module, module_args=module_args, host_pattern=host_pattern,
                               **kwargs)
    result = RunResult(status=str(r.status), rc=int(r.rc if r.rc is not None else -1), hosts=hosts,
                       canceled=r.status == "canceled")
    if expect_hosts is not None and not result.canceled:
        _check_hosts(result, expect_hosts, inventory)
    return result
