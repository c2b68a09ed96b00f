"""Typed errors of the machine substrate, leaves of callfleet's one error tree.

They reuse the project's exit-code classes (orchestrator.errors) so the CLI maps
them without knowing this package: bad plans are InvalidInput (exit 2), missing
host tools ToolMissing (3), machines that do not boot or stop RemoteError (4).
"""

from __future__ import annotations

from orchestrator.errors import InvalidInput, RemoteError, ToolMissing


class AddressOutOfRange(InvalidInput):
    """A lab address outside 198.18.0.0/15 (the only range labs may use)."""


class AddressInUse(InvalidInput):
    """A lab address is already assigned on this computer or routed elsewhere."""


class NamingError(InvalidInput):
    """A bridge or machine name that does not fit Linux's 15-character interface names."""


class LabShapeChanged(InvalidInput):
    """`up` asked for a different lab than the one recorded in the state dir."""


class HostToolsMissing(ToolMissing):
    """systemd-nspawn, debootstrap or another host tool is missing."""


class ImageBuildFailed(RemoteError):
    """debootstrap or the image's post-processing failed."""


class MachineBootFailed(RemoteError):
    """A machine did not reach readiness (sshd + systemd running) in time."""


class MachineStopFailed(RemoteError):
    """A machine's processes survived SIGTERM and SIGKILL."""
