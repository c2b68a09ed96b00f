"""What every channel adapter implements, and how it reports failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.alerting.models import Alert
from orchestrator.alerting.templates import Message

Clock = Callable[[], float]


class ChannelError(Exception):
    """One try failed. `permanent` says retrying cannot help (refused credentials,
    a 4xx answer, every recipient rejected)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass
class Progress:
    """State of one delivery, kept across its tries.

    Channels that send per recipient (SMS) add each accepted target to `done`, so a
    retry after a broken connection resumes where it stopped instead of re-sending to
    everyone. `detail` is recorded in the store (no secrets, no message text)."""

    done: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    acknowledged: bool = False


@dataclass(frozen=True)
class SendContext:
    """Limits of one try: socket timeout, and the delivery's absolute deadline on `clock`."""

    timeout: float
    deadline: float
    clock: Clock = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def remaining(self) -> float:
        """Seconds left before the delivery's deadline (never negative)."""
        return max(0.0, self.deadline - self.clock())

    def op_timeout(self) -> float:
        """Timeout for one blocking operation: the try's timeout, cut at the deadline."""
        return max(0.05, min(self.timeout, self.remaining()))


class Channel(Protocol):
    """A way to reach people: webhook, SMTP or SMPP."""

    name: str
    type: str

    def send(self, *, alert: Alert, message: Message, targets: tuple[str, ...], ctx: SendContext,
             progress: Progress) -> None:
        """Deliver to every target not yet in progress.done; raise ChannelError on failure."""
