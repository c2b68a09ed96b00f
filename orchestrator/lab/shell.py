"""Root commands on a lab machine, the way an operator's tooling runs them: SSH as the lab
user (host key checked), then `sudo -n`."""

from __future__ import annotations

import shlex

from orchestrator.lab.machines import MachineLab


class RootShell:
    """Runs a shell command as root on one lab machine; returns (exit status, output)."""

    def __init__(self, lab: MachineLab, machine: str, timeout: float = 60) -> None:
        self._lab, self._machine, self._timeout = lab, machine, timeout

    def __call__(self, command: str) -> tuple[int, str]:
        proc = self._lab.ssh(self._machine, f"sudo -n sh -c {shlex.quote(command)}", timeout=self._timeout)
        return proc.returncode, proc.stdout + proc.stderr
