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
  8  a gate was INCONCLUSIVE (too little data, or the baseline is failing too)
"""

from __future__ import annotations


class CallfleetError(Exception):
    """Root of every error callfleet reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidInput(CallfleetError):
    """Bad inventory, policy, release or arguments; nothing was changed."""

    exit_code = 2


class ToolMissing(CallfleetError):
    """A binary callfleet needs is not installed."""

    exit_code = 3


class RemoteError(CallfleetError):
    """A host, process or service did not do what was asked."""

    exit_code = 4


class HealthCheckFailed(CallfleetError):
    """Synthetic or live calls show the estate (or a site) unhealthy."""

    exit_code = 5


class RolledBack(CallfleetError):
    """The change failed after the switch; the site is back on its previous release."""

    exit_code = 6


class RollbackFailed(CallfleetError):
    """Putting the previous release back failed; the site stays drained."""

    exit_code = 7
