"""Leases, decided without side effects: who holds what until when, under which fencing token.

A holder is (host, pid, process start time); $CALLFLEET_HOLDER replaces the host part
(a CI runner's name, or a test simulating several runners on one machine). Times are
the database's clock, so runners with skewed clocks agree on expiry. Every grant to a
new holder increases the token; a write names its token and is refused once the token
moved on or the lease expired, so a holder that was paused past its lease and wakes up
cannot write (fencing).
"""

from __future__ import annotations

import enum
import os
import socket

from pydantic import BaseModel, ConfigDict

from orchestrator import procs

HOLDER_ENV = "CALLFLEET_HOLDER"


class Holder(BaseModel):
    """Who holds a lease."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str
    pid: int
    start: int | None = None  # the process's start time (a reused pid is another holder)

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"


def me() -> Holder:
    """This process: $CALLFLEET_HOLDER (or the host name), its pid and start time."""
    pid = os.getpid()
    return Holder(host=os.environ.get(HOLDER_ENV) or socket.gethostname(), pid=pid, start=procs.start_time(pid))


class LeaseState(BaseModel):
    """A lease as stored: its holder (None: free), expiry (None: a lease from before expiries) and token."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    holder: Holder | None
    expires: float | None
    token: int


class Verdict(enum.StrEnum):
    """What a request for a lease gets."""

    GRANTED = "granted"  # free, expired, or its holder is known dead: a new token
    RENEWED = "renewed"  # already ours: same token, later expiry
    REFUSED = "refused"  # a live holder's lease


class Decision(BaseModel):
    """The outcome of a request, with what to store when not refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    verdict: Verdict
    token: int
    expires: float
    holder: Holder | None  # REFUSED: the one who holds it
    remaining_s: float = 0.0  # REFUSED: how long until it expires (inf: no expiry, a live local holder)


def same(a: Holder, b: Holder) -> bool:
    """One process (a holder stored before start times were is matched on host and pid)."""
    return a.host == b.host and a.pid == b.pid and (a.start is None or b.start is None or a.start == b.start)


def decide(state: LeaseState, *, me: Holder, now: float, ttl_s: float, local_alive: bool | None) -> Decision:
    """Grant, renew or refuse. `local_alive`: whether the holder is a live process of this host
    (None when it is on another host, where it cannot be checked)."""
    grant = Decision(verdict=Verdict.GRANTED, token=state.token + 1, expires=now + ttl_s, holder=me)
    held = state.holder
    if held is None:
        return grant
    if same(held, me):
        return Decision(verdict=Verdict.RENEWED, token=state.token, expires=now + ttl_s, holder=me)
    if local_alive is False:
        return grant  # its process is gone (kill -9 on this host): no need to wait for expiry
    if state.expires is None:
        # a lease from before expiries: only a live process of this host keeps it
        if local_alive:
            return Decision(verdict=Verdict.REFUSED, token=state.token, expires=now, holder=held,
                            remaining_s=float("inf"))
        return grant
    if state.expires > now:
        return Decision(verdict=Verdict.REFUSED, token=state.token, expires=state.expires, holder=held,
                        remaining_s=state.expires - now)
    return grant


def valid(state: LeaseState, *, token: int, now: float) -> bool:
    """Whether a write under `token` may proceed: the lease is still that token's and unexpired."""
    return state.holder is not None and state.token == token and (state.expires is None or state.expires > now)
