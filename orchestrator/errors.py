"""One exception root with typed leaves. Only the CLI maps them to exit codes.

Exit codes (documented in README and `callfleet --help`):
  0  success
  1  unexpected internal error (a bug: please report it)
  2  invalid input: inventory, policy, release or command-line arguments
  3  a required tool is missing on this machine (sipp, kamailio, pulumi CLI, ...)
  4  a remote operation failed: host unreachable, SSH refused, process crashed
  5  health check failed: calls failed or a gate said FAIL
  6  an upgrade failed after the switch and the site was rolled back (traffic restored)
  7  a rollback failed: the site is left drained and needs a human
  8  a gate was INCONCLUSIVE (too little data, or the baseline is failing too) and no site
     the run upgraded earlier explains it: the candidate rolled back, the run paused for a human
  9  another rollout holds the lock
 10  a rollout is waiting (bake, approval, freeze): `rollout advance` later
 11  the fleet was rolled back: every site a rollout upgraded is back on its from-release
     (the fleet guard named a culprit, or `rollout undo`)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code of the CLI (the table above; docs/CLI.md is the contract)."""

    OK = 0
    INTERNAL = 1
    INVALID_INPUT = 2
    TOOL_MISSING = 3
    REMOTE = 4
    HEALTH_FAILED = 5
    ROLLED_BACK = 6
    ROLLBACK_FAILED = 7
    INCONCLUSIVE = 8
    LOCKED = 9
    WAITING = 10
    FLEET_ROLLED_BACK = 11


class CallfleetError(Exception):
    """Root of every error callfleet reports to a user."""

    exit_code: int = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidInput(CallfleetError):
    """Bad inventory, policy, release or arguments; nothing was changed."""

    exit_code: int = ExitCode.INVALID_INPUT


class ToolMissing(CallfleetError):
    """A binary callfleet needs is not installed."""

    exit_code: int = ExitCode.TOOL_MISSING


class RemoteError(CallfleetError):
    """A host, process or service did not do what was asked."""

    exit_code: int = ExitCode.REMOTE


class HealthCheckFailed(CallfleetError):
    """Synthetic or live calls show the estate (or a site) unhealthy."""

    exit_code: int = ExitCode.HEALTH_FAILED


class RolledBack(CallfleetError):
    """The change failed after the switch; the site is back on its previous release."""

    exit_code: int = ExitCode.ROLLED_BACK


class RollbackFailed(CallfleetError):
    """Putting the previous release back failed; the site stays drained."""

    exit_code: int = ExitCode.ROLLBACK_FAILED
