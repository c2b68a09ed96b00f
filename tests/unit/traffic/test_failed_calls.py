"""Failed callers: the edge's htable dump parsed, stored once, listed by `incidents callers`."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import pytest

from orchestrator.errors import RemoteError
from orchestrator.schemas import validate
from orchestrator.traffic.failed_calls import MAX_FORGET, TABLES, Collected, EdgeFailedCalls, FailedCall, parse_dump
from orchestrator.watch.journal import WatchJournal
from tests.conftest import cli

# what `kamcmd htable.dump failed` prints (checked against Kamailio 5.6 on Debian 12)
DUMP = """{
\tentry: 408
\tsize: 2
\tslot: {
\t\t{
\t\t\tname: b-2@198.18.78.1
\t\t\tvalue: 1796230001|408|112|site3|site3-cs1|+33610000002
\t\t\ttype: str
\t\t}
\t\t{
\t\t\tname: a-1@198.18.78.1
\t\t\tvalue: 1796230000|503|15|none|none|anonymous|odd
\t\t\ttype: str
\t\t}
\t}
}
{
\tentry: 9
\tsize: 1
\tslot: {
\t\t{
\t\t\tname: junk
\t\t\tvalue: not ours
\t\t\ttype: str
\t\t}
\t}
}
"""


def test_a_dump_parses_oldest_first_and_skips_what_is_not_ours() -> None:
    calls = parse_dump(DUMP)
    assert [c.call_id for c in calls] == ["a-1@198.18.78.1", "b-2@198.18.78.1"]
    assert calls[0] == FailedCall(call_id="a-1@198.18.78.1", at=1796230000, code=503, number="15", site="none",
                                  host="none", caller="anonymous|odd")  # a '|' in the caller stays in it
    assert calls[1].caller == "+33610000002" and calls[1].code == 408 and calls[1].site == "site3"
    assert parse_dump("") == [] and parse_dump("error: 404 - no such table") == []


class FakeEdge:
    """kamcmd on the edge: DUMP in table failed3, the other tables empty, `unreadable` ones refused."""

    def __init__(self, dump: str = DUMP, gone: set[str] | None = None,
                 unreadable: frozenset[str] = frozenset()) -> None:
        self.dump, self.gone, self.calls = dump, gone or set(), []  # type: list[tuple[str, ...]]
        self.unreadable = unreadable

    def rpc(self, *args: str) -> str:
        self.calls.append(args)
        if args[0] == "htable.dump" and args[1] in self.unreadable:
            raise RemoteError(f"kamcmd htable.dump {args[1]} on edge 198.18.78.2: ERROR: reply too big")
        if args[0] == "htable.dump":
            return self.dump if args[1] == "failed3" else "{\n}"
        if args[0] == "htable.delete" and args[2] in self.gone:
            raise RemoteError("kamcmd htable.delete failed x on edge: error: 404 - Key not found in htable.")
        if args[0] == "htable.delete" and args[2] == "broken":
            raise RemoteError("kamcmd htable.delete on edge: no answer")
        return ""


def test_forget_deletes_each_stored_call_in_its_table_tolerating_expired_ones_and_is_bounded() -> None:
    edge = FakeEdge(gone={"a-1@198.18.78.1"})
    source = EdgeFailedCalls(edge)  # type: ignore[arg-type]
    got = source.collect()
    assert [c.call_id for c in got.calls] == ["a-1@198.18.78.1", "b-2@198.18.78.1"] and got.unread == []
    assert edge.calls == [("htable.dump", t) for t in TABLES] and len(TABLES) == 8
    source.forget(["a-1@198.18.78.1", "b-2@198.18.78.1", "never-read"])  # what it did not read: left alone
    assert edge.calls[8:] == [("htable.delete", "failed3", "a-1@198.18.78.1"),
                              ("htable.delete", "failed3", "b-2@198.18.78.1")]


def test_a_delete_that_fails_is_raised_and_tried_again_and_deletions_are_bounded() -> None:
    many = "".join(f"{{\n\tslot: {{\n\t\t{{\n\t\t\tname: {c}\n\t\t\tvalue: 1796230000|408|112|site3|h|+3361\n"
                   "\t\t\ttype: str\n\t\t}\n\t}\n}\n" for c in ["broken", *(f"k{i}" for i in range(MAX_FORGET + 10))])
    edge = FakeEdge(dump=many)
    source = EdgeFailedCalls(edge)  # type: ignore[arg-type]
    assert len(source.collect().calls) == MAX_FORGET + 11
    with pytest.raises(RemoteError):
        source.forget(["broken"])
    edge.calls.clear()
    with pytest.raises(RemoteError):
        source.forget(["broken"])  # still known: tried again
    assert edge.calls == [("htable.delete", "failed3", "broken")]
    edge.calls.clear()
    source.forget([f"k{i}" for i in range(MAX_FORGET + 10)])
    assert len(edge.calls) == MAX_FORGET


def test_an_unreadable_table_loses_none_of_the_others() -> None:
    source = EdgeFailedCalls(FakeEdge(unreadable=frozenset({"failed0", "failed5"})))  # type: ignore[arg-type]
    got = source.collect()
    assert len(got.calls) == 2
    assert len(got.unread) == 2 and all("reply too big" in u for u in got.unread)


def _call(call_id: str, at: float, site: str = "site3", caller: str = "+33610000001") -> FailedCall:
    return FailedCall(call_id=call_id, at=at, code=408, number="112", site=site, host=f"{site}-cs1", caller=caller)


def test_the_journal_keeps_each_call_once_and_forgets_it_after_the_retention(store_url: str) -> None:
    now = [1_796_230_000.0]
    wj = WatchJournal(store_url, clock=lambda: now[0])
    first = [_call("a", now[0] - 10), _call("b", now[0] - 5, site="site1")]
    assert wj.keep_failed_calls(first, retention_s=3600) == ["a", "b"]
    assert wj.keep_failed_calls([first[0], _call("c", now[0])], retention_s=3600) == ["a", "c"]  # a: not twice
    assert [c.call_id for c in wj.failed_calls(start=0, end=now[0])] == ["a", "b", "c"]
    assert [c.call_id for c in wj.failed_calls(start=0, end=now[0], sites={"site3"})] == ["a", "c"]
    assert [c.call_id for c in wj.failed_calls(start=now[0] - 6, end=now[0] - 1)] == ["b"]
    now[0] += 3600 - 7  # a (10 s before) is past the hour, b and c are not
    wj.keep_failed_calls([], retention_s=3600)
    assert [c.call_id for c in wj.failed_calls(start=0, end=now[0])] == ["b", "c"]
    # personal data never reaches the event lines
    assert not any("+3361" in json.dumps(e.data) for e in wj.events())


def test_a_sqlite_watch_journal_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    WatchJournal(tmp_path / "w.sqlite")
    assert stat.S_IMODE((tmp_path / "w.sqlite").stat().st_mode) == 0o600


def _journal_with_incident(path: Path) -> None:
    wj = WatchJournal(path)
    t0 = 1_796_230_000.0
    wj.keep_failed_calls([_call("before", t0 - 400), _call("early", t0 - 60), _call("other", t0 + 1, site="site1"),
                          _call("nosite", t0 + 2, site="none", caller="+33610000009"),
                          _call("during", t0 + 3, caller="=cmd|' /C calc'!A0"), _call("after", t0 + 100)],
                         retention_s=10**10)
    wj._clock = lambda: t0
    wj.record("incident_opened", round_no=4, site="site3", incident="inc-1", data={})
    wj._clock = lambda: t0 + 50
    wj.record("incident_resolved", round_no=9, site="site3", incident="inc-1", data={})


def test_incidents_callers_lists_the_incident_sites_calls_as_table_csv_and_json(tmp_path: Path) -> None:
    journal = tmp_path / "w.sqlite"
    _journal_with_incident(journal)
    doc = cli("incidents", "callers", "inc-1", "--journal", str(journal), "--json")
    assert doc.returncode == 0, doc.stderr
    body = json.loads(doc.stdout)
    validate("failed-callers", body)
    # 300 s before the opening up to the resolution; the site's calls and those that found no site
    assert [c["call_id"] for c in body["calls"]] == ["early", "nosite", "during"]
    assert body["sites"] == ["site3"] and body["open"] is False
    out = cli("incidents", "callers", "inc-1", "--journal", str(journal), "--csv", "--before", "30")
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["call_id", "at_utc", "code", "number", "site", "host", "caller"]
    assert [r[0] for r in rows[1:]] == ["nosite", "during"]
    assert rows[2][6] == "=cmd|' /C calc'!A0"  # verbatim: the CSV module quotes, nothing is evaluated here
    table = cli("incidents", "callers", "inc-1", "--journal", str(journal))
    assert table.returncode == 0 and "+33610000009" in table.stdout and "3 failed calls" in table.stdout


def test_incidents_callers_refuses_an_unknown_incident_or_journal(tmp_path: Path) -> None:
    journal = tmp_path / "w.sqlite"
    _journal_with_incident(journal)
    unknown = cli("incidents", "callers", "inc-404", "--journal", str(journal))
    assert unknown.returncode == 2 and "no incident 'inc-404'" in unknown.stderr
    missing = cli("incidents", "callers", "inc-1", "--journal", str(tmp_path / "absent.sqlite"))
    assert missing.returncode == 2 and "no watch journal here" in missing.stderr
    assert not (tmp_path / "absent.sqlite").exists()


class FakeSource:
    """The edge's table: calls appear in it; what the store took is forgotten."""

    def __init__(self) -> None:
        self.table: dict[str, FailedCall] = {}
        self.broken = False

    def collect(self) -> Collected:
        if self.broken:
            raise RemoteError("kamcmd htable.dump failed0 on edge 198.18.78.2: no answer")
        return Collected(calls=list(self.table.values()), unread=[])

    def forget(self, call_ids: list[str]) -> None:
        for c in call_ids:
            self.table.pop(c, None)


def test_the_leader_moves_the_edges_failed_calls_into_the_store_each_round(tmp_path: Path) -> None:
    from tests.unit.watch.helpers import T0
    from tests.unit.watch.test_supervisor import make

    sup, _, _ = make(tmp_path)
    source = FakeSource()
    sup._ports.failed_calls = source
    source.table["c1"] = _call("c1", T0 + 1)
    sup.run(rounds=1)
    assert source.table == {}  # stored, then forgotten on the edge
    source.table["c2"] = _call("c2", T0 + 2, caller="+33610000077")
    source.broken = True
    sup.run(rounds=1)
    assert "c2" in source.table  # not lost: collected once the edge answers
    source.broken = False
    sup.run(rounds=1)
    assert [c.call_id for c in sup._journal.failed_calls(start=T0, end=T0 + 10)] == ["c1", "c2"]
    blind = [e for e in sup._journal.events() if e.kind == "failed_calls_blind"]
    assert len(blind) == 1 and "no answer" in blind[0].data["error"]
    assert not any("+3361" in json.dumps(e.data) for e in sup._journal.events())
