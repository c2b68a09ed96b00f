"""Failed emergency calls as the edge kept them (its htables `failed0`..`failed7`, see edge.cfg).

The edge keeps every failed call by Call-ID with when, the SIP code, the number dialled, the
site and host it went to and the caller (P-Asserted-Identity, else From), in one of eight
tables by the Call-ID's hash: kamcmd refuses a reply of more than about 1,000 items, so one
table would blind the watch to a large backlog, and a table that cannot be read leaves the
others readable. The watch collects them each round over the edge's control socket and
deletes what it stored. A caller is personal data: these rows go to the store only, never to
a log or a journal line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import RemoteError

if TYPE_CHECKING:
    from orchestrator.traffic.edge import EdgeShell

TABLES = tuple(f"failed{i}" for i in range(8))  # edge.cfg route FAILED_CALLER
# kamcmd prints htable.dump as nested braces; each item is a `name: ` line, then `value: `.
_ITEM = re.compile(r"^\s*name:\s*(?P<name>\S+)\s*\n\s*value:\s*(?P<value>[^\n]*)$", re.MULTILINE)
MAX_FORGET = 500  # deletions per round; the rest expire on the edge (FAILED_TTL) or go next round


class Collected(BaseModel):
    """One read of the edge: the calls it holds, and the tables it could not read (their errors)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    calls: list[FailedCall]
    unread: list[str]


class FailedCall(BaseModel):
    """One emergency call the public placed that failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    call_id: str
    at: float  # unix time of the failure, to the second
    code: int  # the final SIP answer (the edge's own 408, or 503 when no site was available)
    number: str  # the emergency number dialled
    site: str  # "none": no site was available
    host: str
    caller: str


def parse_value(call_id: str, value: str) -> FailedCall | None:
    """One htable value "at|code|number|site|host|caller"; None when it is not one of ours."""
    parts = value.split("|", 5)
    if len(parts) != 6:
        return None
    at, code, number, site, host, caller = parts
    try:
        return FailedCall(call_id=call_id, at=float(at), code=int(code), number=number, site=site, host=host,
                          caller=caller)
    except ValueError:
        return None


def parse_dump(text: str) -> list[FailedCall]:
    """kamcmd's `htable.dump failed` output, oldest first; malformed items are skipped."""
    calls = [parse_value(m["name"], m["value"].strip()) for m in _ITEM.finditer(text)]
    return sorted((c for c in calls if c is not None), key=lambda c: (c.at, c.call_id))


class EdgeFailedCalls:
    """The edge's failed-calls table through its control socket (the steering connection)."""

    def __init__(self, edge: EdgeShell) -> None:
        self._edge = edge
        self._table: dict[str, str] = {}  # Call-ID -> the table it was read from

    def collect(self) -> Collected:
        """Every failed call the edge still holds, table by table (one unreadable table loses no other)."""
        calls: list[FailedCall] = []
        unread: list[str] = []
        for table in TABLES:
            try:
                found = parse_dump(self._edge.rpc("htable.dump", table))
            except RemoteError as exc:
                unread.append(exc.message.splitlines()[0])
                continue
            self._table.update((c.call_id, table) for c in found)
            calls.extend(found)
        return Collected(calls=sorted(calls, key=lambda c: (c.at, c.call_id)), unread=unread)

    def forget(self, call_ids: list[str]) -> None:
        """Delete stored calls on the edge (at most MAX_FORGET a round; only calls it collected)."""
        for call_id in call_ids[:MAX_FORGET]:
            table = self._table.pop(call_id, None)
            if table is None:
                continue
            try:
                self._edge.rpc("htable.delete", table, call_id)
            except RemoteError as exc:
                if "404" not in exc.message:  # expired on the edge meanwhile: gone either way
                    self._table[call_id] = table
                    raise
