"""Lab prefixes for tests that stay clear of labs this session did not make.

A run that was killed (a CI job timed out, a session stopped) can leave its bridge and
addresses behind; a lab refuses to come up on them, rightly, since it cannot tell a dead lab
from a live one. A test session therefore takes its preferred prefix only when it is free on
this computer, else a fixed alternative of its own; it never tears down what it did not make."""

from __future__ import annotations

from ipaddress import IPv4Network

from orchestrator.lab.machines import net
from orchestrator.lab.topology import LabParams

# Enough addresses for the largest lab a test brings up (edge, services, 8 sites x 2 hosts).
_MACHINES = 20


def is_free(base: str) -> bool:
    """True when no bridge of that prefix exists and none of its addresses is in use here."""
    bridge = LabParams(base=base).bridge
    return not net.link_exists(bridge) and not net.conflicts(IPv4Network(f"{base}.0/24"), _MACHINES, bridge)


def alternative(base: str) -> str:
    """The one fallback prefix of `base`: 198.18.X -> 198.19.(100+X) for X < 100 (the test
    prefixes are 75-80), 198.19.Y (a pytest-xdist worker's) -> 198.19.(Y+150); distinct per
    preferred prefix, so two fallbacks never meet."""
    _, second, third = base.split(".")
    offset = 100 if second == "18" else 150
    return f"198.19.{(int(third) + offset) % 256}"


def free_base(preferred: str) -> str:
    """`preferred` when it is free, else its alternative when that is; else `preferred`, so the
    lab's own refusal (naming the bridge or address in the way) is what the test reports."""
    if is_free(preferred):
        return preferred
    other = alternative(preferred)
    return other if is_free(other) else preferred
