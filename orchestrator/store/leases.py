"""Named leases and idempotency keys in a store (the watch's leader lease and its actions).

Both tables live in the owning component's schema (its migrations create them with
`ddl`); every operation runs inside the caller's write transaction, so taking the lease,
checking the token and claiming an action key commit together with what they guard.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orchestrator.store.db import Store
from orchestrator.store.lease import Decision, Holder, LeaseState, Verdict, decide, valid
from orchestrator.store.url import Backend

LEASES = "callfleet_leases"
ACTIONS = "callfleet_actions"


def ddl(backend: Backend) -> list[str]:
    """The two tables (times in the database's clock, as Unix seconds)."""
    real = "REAL" if backend is Backend.SQLITE else "DOUBLE PRECISION"
    return [f"CREATE TABLE IF NOT EXISTS {LEASES} (name TEXT PRIMARY KEY, host TEXT, pid INTEGER, start BIGINT, "
            f"expires {real}, token BIGINT NOT NULL DEFAULT 0, since {real})",
            f"CREATE TABLE IF NOT EXISTS {ACTIONS} (key TEXT PRIMARY KEY, token BIGINT NOT NULL, holder TEXT NOT NULL, "
            f"at {real} NOT NULL, data TEXT NOT NULL DEFAULT '{{}}')"]


def state(conn: Connection, name: str) -> LeaseState:
    """The lease called `name` (free when never taken)."""
    row = conn.execute(sa.text(f"SELECT * FROM {LEASES} WHERE name = :n"), {"n": name}).mappings().first()
    return _state(row)


def _state(row: Any) -> LeaseState:
    if row is None:
        return LeaseState(holder=None, expires=None, token=0)
    holder = None if row["host"] is None else Holder(host=row["host"], pid=int(row["pid"]), start=row["start"])
    return LeaseState(holder=holder, expires=row["expires"], token=int(row["token"]))


def acquire(store: Store, conn: Connection, name: str, *, me: Holder, ttl_s: float,
            local_alive: bool | None = None) -> Decision:
    """Take or renew the lease (or be refused); the caller's transaction commits it."""
    now = store.now(conn)
    current = state(conn, name)
    decision = decide(current, me=me, now=now, ttl_s=ttl_s, local_alive=local_alive)
    if decision.verdict is Verdict.REFUSED:
        return decision
    since = now if decision.verdict is Verdict.GRANTED else None
    conn.execute(sa.text(f"INSERT INTO {LEASES}(name, host, pid, start, expires, token, since) "
                         "VALUES (:n, :h, :p, :s, :e, :t, :since) ON CONFLICT (name) DO UPDATE SET host = :h, "
                         f"pid = :p, start = :s, expires = :e, token = :t, since = COALESCE(:since, {LEASES}.since)"),
                 {"n": name, "h": me.host, "p": me.pid, "s": me.start, "e": decision.expires, "t": decision.token,
                  "since": since})
    return decision


def release(conn: Connection, name: str, *, me: Holder, token: int) -> None:
    """Give the lease up (only if it is still this holder's, under this token)."""
    conn.execute(sa.text(f"UPDATE {LEASES} SET host = NULL, pid = NULL, start = NULL, expires = NULL "
                         "WHERE name = :n AND host = :h AND pid = :p AND token = :t"),
                 {"n": name, "h": me.host, "p": me.pid, "t": token})


def holds(store: Store, conn: Connection, name: str, *, token: int) -> bool:
    """Whether a write under `token` may proceed (the fencing check)."""
    return valid(state(conn, name), token=token, now=store.now(conn))


def claim_once(store: Store, conn: Connection, key: str, *, token: int, holder: Holder, data: str = "{}") -> bool:
    """Record that the action `key` is being taken; False when it already was (by anyone)."""
    got = conn.execute(sa.text(f"INSERT INTO {ACTIONS}(key, token, holder, at, data) VALUES (:k, :t, :h, :a, :d) "
                               "ON CONFLICT (key) DO NOTHING"),
                       {"k": key, "t": token, "h": str(holder), "a": store.now(conn), "d": data})
    return bool(got.rowcount == 1)
