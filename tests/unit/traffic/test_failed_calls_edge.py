"""The edge's failed-callers tables under a backlog, on the real edge.cfg: a real Kamailio on
127.0.0.1 whose only site is drained answers every INVITE 503 "No site available", real SIPp
places 1,500 calls through it (bounded: 1,500 calls, 60 s), and the watch's reader must get
every one of them back and then delete them. One table of that size is past what kamcmd
accepts in one reply ("reply too big" from about 1,000 items): the watch would read nothing."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import kamrpc, procs
from orchestrator.sipp import scenarios
from orchestrator.traffic.failed_calls import TABLES, EdgeFailedCalls

EDGE_CFG = Path(__file__).resolve().parents[3] / "orchestrator" / "lab" / "files" / "edge.cfg"
CALLS = 1_500


class LocalEdge:
    """EdgeShell's rpc over the local control socket (the watch's reader needs nothing more)."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock

    def rpc(self, *args: str) -> str:
        return kamrpc.rpc(self.sock, *args, timeout=20)


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def edge(tmp_path: Path) -> Iterator[tuple[LocalEdge, int]]:
    sock, ds = tmp_path / "ctl.sock", tmp_path / "dispatcher.list"
    ds.write_text("1 sip:127.0.0.1:9 1 0 duid=site1-cs1;rweight=1;site=site1\n")  # inactive: site1 drained
    port = procs.free_udp_port("127.0.0.1")
    proc = subprocess.Popen(["kamailio", "-f", str(EDGE_CFG), "-DD", "-E", "-l", f"udp:127.0.0.1:{port}",
                             "-n", "1", "-m", "64", "-M", "8", "-w", str(tmp_path),
                             "-A", f'CTL_SOCKET="unix:{sock}"', "-A", f'DS_LIST="{ds}"',
                             "-A", f"METRICS_LISTEN=tcp:127.0.0.1:{_free_tcp_port()}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "kamailio.log").open("w"))
    try:
        assert procs.wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=15), "no control socket"
        assert proc.poll() is None, (tmp_path / "kamailio.log").read_text()[-2000:]
        yield LocalEdge(sock), port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_backlog_past_one_replys_size_is_read_whole_and_forgotten(edge: tuple[LocalEdge, int],
                                                                   tmp_path: Path) -> None:
    local, port = edge
    stats = scenarios.run_caller(local_address="127.0.0.1", target=f"127.0.0.1:{port}", number="112",
                                 calls=CALLS, rate=300, workdir=tmp_path / "caller")
    assert stats.failed == CALLS and stats.failures.get("503") == CALLS, stats
    reader = EdgeFailedCalls(local)  # type: ignore[arg-type]
    got = reader.collect()
    assert got.unread == []
    assert len({c.call_id for c in got.calls}) == CALLS
    assert {(c.code, c.number, c.site, c.caller) for c in got.calls} == {(503, "112", "none", "callfleet-probe")}
    per_table = [local.rpc("htable.dump", t).count("name:") for t in TABLES]
    assert max(per_table) < 1_000 and min(per_table) > 0, per_table  # spread: each table stays readable
    for start in range(0, CALLS, 500):
        reader.forget([c.call_id for c in got.calls[start:start + 500]])
    assert reader.collect().calls == []
