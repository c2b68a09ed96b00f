"""Schema versions per component, in one small table, and the migrations that reach them.

Each component (rollout journal, watch journal, alert store) lists its migrations in
order; a migration is a function of the connection and the backend, so one list serves
SQLite and PostgreSQL and may look before it changes (a journal made before versions
existed already has some of what the first migrations create). Migrations run inside
the component's write transaction: two processes upgrading at once apply each step once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection

from orchestrator.errors import InvalidInput
from orchestrator.store.db import Store
from orchestrator.store.url import Backend

VERSIONS_TABLE = "callfleet_schema"


class Migration(BaseModel):
    """Step to `version`: `apply(conn, backend)`."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    version: int
    description: str
    apply: Callable[[Connection, Backend], None]


def sql_steps(*, sqlite: Sequence[str], postgresql: Sequence[str]) -> Callable[[Connection, Backend], None]:
    """A migration made of plain statements per backend."""

    def apply(conn: Connection, backend: Backend) -> None:
        for stmt in sqlite if backend is Backend.SQLITE else postgresql:
            conn.exec_driver_sql(stmt)

    return apply


def current(store: Store, conn: Connection, component: str) -> int:
    """The component's schema version (0: never versioned, or absent)."""
    if VERSIONS_TABLE not in store.table_names(conn):
        return 0
    got = conn.execute(sa.text(f"SELECT version FROM {VERSIONS_TABLE} WHERE component = :c"),
                       {"c": component}).scalar_one_or_none()
    return int(got or 0)


def upgrade(store: Store, conn: Connection, component: str, migrations: Sequence[Migration]) -> int:
    """Bring the component to the newest version inside the caller's write transaction;
    returns the version. A store newer than this program is refused untouched."""
    latest = migrations[-1].version
    have = current(store, conn, component)
    if have > latest:
        raise InvalidInput(f"{store.url.display()}: the {component} schema is version {have}, newer than this "
                           f"callfleet knows ({latest})", hint="upgrade callfleet on this runner")
    if have == latest:
        return have
    conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (component TEXT PRIMARY KEY, "
                         "version INTEGER NOT NULL)")
    for step in migrations:
        if step.version > have:
            step.apply(conn, store.backend)
    if have == 0:
        conn.execute(sa.text(f"INSERT INTO {VERSIONS_TABLE}(component, version) VALUES (:c, :v)"),
                     {"c": component, "v": latest})
    else:
        conn.execute(sa.text(f"UPDATE {VERSIONS_TABLE} SET version = :v WHERE component = :c"),
                     {"c": component, "v": latest})
    return latest
