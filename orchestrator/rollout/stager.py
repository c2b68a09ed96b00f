"""Staging the next site off the critical path: one background preflight at a time.

While a wave's site steps and bakes, the executor stages the next wave's site (preflight, its
release installed beside the current one, `kamailio -c`; nothing live changes). The work runs
in a thread; only the executor's loop writes the journal, when it collects the result, so
the journal sees staging begin, end and fail in the loop's own order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from orchestrator.frozen import Frozen


class StageOutcome(Frozen):
    """How one wave's staging ended."""

    wave: int
    site: str
    ok: bool
    detail: str
    seconds: float


class Stager:
    """At most one staging run in the background; `cancel` is what the work must obey."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._outcome: StageOutcome | None = None
        self.wave: int | None = None

    @property
    def busy(self) -> bool:
        """A staging run is under way or its outcome not yet collected."""
        return self.wave is not None

    def start(self, wave: int, site: str, work: Callable[[threading.Event], tuple[bool, str]]) -> None:
        """Run `work(cancel)` (-> ok, detail) for `wave` in a thread."""
        if self.busy:
            raise RuntimeError(f"staging wave {self.wave} is not collected yet")
        self.cancel.clear()
        self.wave, self._outcome = wave, None

        def body() -> None:
            t0 = time.monotonic()
            try:
                ok, detail = work(self.cancel)
            except Exception as exc:  # reported, never raised in a thread nobody joins
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            self._outcome = StageOutcome(wave=wave, site=site, ok=ok, detail=detail[:500],
                                         seconds=round(time.monotonic() - t0, 3))

        self._thread = threading.Thread(target=body, name=f"stage-wave-{wave}", daemon=True)
        self._thread.start()

    def collect(self, *, wait: bool, cancel: bool = False, timeout: float = 1800.0) -> StageOutcome | None:
        """The outcome once the run has ended (None while it runs and `wait` is false, or when
        nothing was started); `cancel` asks it to stop first. Each outcome is returned once."""
        if self._thread is None:
            return None
        if cancel:
            self.cancel.set()
        if wait:
            self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        outcome, self._thread, self._outcome, self.wave = self._outcome, None, None, None
        return outcome
