"""The notifier: fan an alert out to every channel of every audience concerned.

`submit(alert)` returns at once with a handle: recording, rendering and every delivery
run in background threads, one thread per delivery (an audience on a channel), so a
dead channel never delays the caller (a rollback) or another channel. Each delivery
retries with exponential backoff, bounded by a count and a deadline (at least once,
never forever); the dedupe window stops a storm of the same key. Every delivery is
recorded in the store; a store that cannot be written does not stop alerts.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from orchestrator.alerting.channels import Channel, ChannelError, Progress, SendContext, build_channels
from orchestrator.alerting.config import AlertConfig, Route
from orchestrator.alerting.models import Alert, NotificationState
from orchestrator.alerting.secrets import RedactingFilter, Redactor
from orchestrator.alerting.store import AlertStore
from orchestrator.alerting.templates import Message, render

log = logging.getLogger("orchestrator.alerting")


@dataclass(frozen=True)
class Outcome:
    """How one delivery ended (or that it was suppressed as a duplicate)."""

    audience: str
    channel: str
    state: NotificationState
    attempts: int
    elapsed_s: float
    error: str | None = None
    notification_id: int | None = None


class DispatchHandle:
    """What `submit` returns: wait on it (bounded), or ignore it."""

    def __init__(self, *, alert: Alert) -> None:
        self.alert = alert
        self.alert_id: int | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []

    def _add(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    def _finish(self) -> None:
        self._done.set()

    def done(self) -> bool:
        """True once every delivery has ended."""
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds; True when every delivery has ended."""
        return self._done.wait(timeout)

    def outcomes(self) -> list[Outcome]:
        """Deliveries ended so far."""
        with self._lock:
            return list(self._outcomes)


class Notifier:
    """Delivers alerts per the config; one instance per process is enough."""

    def __init__(self, *, config: AlertConfig, store: AlertStore | None, channels: Mapping[str, Channel] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._store = store
        self._redact = Redactor(secrets=config.secrets.values())
        # Every record of the alerting logger, tracebacks included, is scrubbed of secrets.
        log.addFilter(RedactingFilter(self._redact))
        self._channels = dict(channels) if channels is not None else build_channels(config=config,
                                                                                    redactor=self._redact)
        self._clock = clock
        self._stop = threading.Event()

    @property
    def longest_delivery_s(self) -> float:
        """Upper bound of one delivery: its deadline plus one blocking operation."""
        return max(self._config.retry_for(c).deadline_s + self._config.retry_for(c).timeout_s
                   for c in self._config.channels)

    def submit(self, alert: Alert, *, only_channel: str | None = None) -> DispatchHandle:
        """Start delivering in the background and return at once."""
        handle = DispatchHandle(alert=alert)
        threading.Thread(target=self._dispatch, args=(alert, handle, only_channel), daemon=True,
                         name=f"alert-{alert.dedupe_key}").start()
        return handle

    def notify(self, alert: Alert, *, timeout: float | None = None) -> DispatchHandle:
        """Deliver and wait (at most `timeout`, default the longest delivery) for the outcome."""
        handle = self.submit(alert)
        handle.wait(self.longest_delivery_s + 1.0 if timeout is None else timeout)
        return handle

    def close(self) -> None:
        """Stop retrying: deliveries waiting for their next try give up now."""
        self._stop.set()

    # --- background work -------------------------------------------------------------

    def _store_call(self, what: str, fn: Callable[[], object]) -> object:
        if self._store is None:
            return None
        try:
            return fn()
        except (sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
            # The record is important, the alert more so: deliver anyway.
            log.warning("alert store: %s failed: %s", what, exc)
            return None

    def _dispatch(self, alert: Alert, handle: DispatchHandle, only_channel: str | None) -> None:
        try:
            self._fan_out(alert, handle, only_channel)
        except Exception:  # a bug here must not kill silently: log it, release waiters
            log.exception("alert dispatch failed for %s", alert.dedupe_key)
        finally:
            handle._finish()

    def _fan_out(self, alert: Alert, handle: DispatchHandle, only_channel: str | None) -> None:
        store = self._store
        alert_id = self._store_call("record", lambda: store.record_alert(alert)) if store else None
        handle.alert_id = alert_id if isinstance(alert_id, int) else None
        messages: dict[tuple[str, str], Message] = {}
        threads = []
        for route in self._config.routes(alert, only_channel=only_channel):
            aud = self._config.audiences[route.audience]  # type: ignore[index]
            key = (aud.language, aud.timezone)
            if key not in messages:
                messages[key] = render(alert=alert, language=aud.language, timezone=aud.timezone,
                                       override_dir=self._config.templates_dir, psap=self._config.psap)
            nid, deliver = self._claim(alert, handle, route)
            if not deliver:
                handle._add(Outcome(audience=route.audience, channel=route.channel,
                                    state=NotificationState.SUPPRESSED, attempts=0, elapsed_s=0.0, notification_id=nid))
                log.info("alert %s to %s via %s suppressed (same key within %gs)", alert.dedupe_key, route.audience,
                         route.channel, self._config.dedupe_window_s)
                continue
            t = threading.Thread(target=self._deliver, args=(alert, messages[key], route, nid, handle), daemon=True,
                                 name=f"alert-{route.channel}-{route.audience}")
            t.start()
            threads.append(t)
        for t in threads:
            t.join()

    def _claim(self, alert: Alert, handle: DispatchHandle, route: Route) -> tuple[int | None, bool]:
        store = self._store
        if store is None or handle.alert_id is None:
            return None, True
        claimed = self._store_call("claim", lambda: store.claim(
            alert_id=handle.alert_id or 0, alert=alert, audience=route.audience, channel=route.channel,
            channel_type=self._channels[route.channel].type, window_s=self._config.dedupe_window_s))
        if isinstance(claimed, tuple):
            return claimed[0], bool(claimed[1])
        return None, True

    def _deliver(self, alert: Alert, message: Message, route: Route, nid: int | None, handle: DispatchHandle) -> None:
        policy = self._config.retry_for(route.channel)
        channel = self._channels[route.channel]
        start = self._clock()
        ctx = SendContext(timeout=policy.timeout_s, deadline=start + policy.deadline_s, clock=self._clock)
        progress = Progress()
        error: str | None = None
        state = NotificationState.FAILED
        attempt = 0
        while attempt < policy.attempts:
            attempt += 1
            try:
                channel.send(alert=alert, message=message, targets=route.targets, ctx=ctx, progress=progress)
            except ChannelError as exc:
                error = self._redact(exc.message)
                log.warning("alert %s to %s via %s: try %d/%d failed: %s", alert.dedupe_key, route.audience,
                            route.channel, attempt, policy.attempts, error)
                pause = policy.backoff(attempt)
                if exc.permanent or attempt >= policy.attempts or ctx.remaining() <= pause:
                    break
                if self._stop.wait(pause):
                    error = f"{error} (notifier closed)"
                    break
                continue
            except Exception as exc:  # an adapter bug is a failed try, never a dead thread
                error = self._redact(f"{type(exc).__name__}: {exc}")
                log.exception("alert %s via %s: unexpected error", alert.dedupe_key, route.channel)
                break
            state = NotificationState.ACKNOWLEDGED if progress.acknowledged else NotificationState.SENT
            error = f"rejected: {', '.join(sorted(progress.rejected))}" if progress.rejected else None
            break
        elapsed = self._clock() - start
        detail = {k: v for k, v in progress.detail.items() if not k.startswith("_")}
        if progress.rejected:
            detail["rejected"] = dict(sorted(progress.rejected.items()))
        detail["elapsed_s"] = round(elapsed, 3)
        if nid is not None and self._store is not None:
            store = self._store
            self._store_call("update", lambda: store.update(nid, state=state, attempts=attempt, error=error,
                                                            detail=detail))
        log.log(logging.INFO if state is not NotificationState.FAILED else logging.ERROR,
                "alert %s to %s via %s: %s after %d tries in %.2fs", alert.dedupe_key, route.audience, route.channel,
                state.value, attempt, elapsed)
        handle._add(Outcome(audience=route.audience, channel=route.channel, state=state, attempts=attempt,
                            elapsed_s=elapsed, error=error, notification_id=nid))
