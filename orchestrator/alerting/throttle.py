"""A thread-safe pacer: at most `rate` events a second, shared by every thread using it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Spaces events 1/rate seconds apart (an SMSC counts submit_sm per second)."""

    def __init__(self, *, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, *, deadline: float | None = None) -> bool:
        """Wait for the next slot; False (without taking it) when it comes after `deadline`."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            if deadline is not None and slot > deadline:
                return False
            self._next = slot + self._interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return True
