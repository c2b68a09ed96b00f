"""A throwaway PostgreSQL server for the tests: initdb into a temporary data dir, postgres on
127.0.0.1 at a free port (and a socket in that dir), stopped and removed afterwards.

Never a system-wide instance: the server is a child of the test session. PostgreSQL refuses
to run as root, so under root it runs as the `postgres` OS user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg


def bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> dict[str, Any]:
    """subprocess arguments that run the server as `postgres` when we are root."""
    if os.getuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


class PgServer:
    """A running server: `url(db)` for a database, `new_database()` for a fresh one per test."""

    def __init__(self, port: int, datadir: Path) -> None:
        self.port = port
        self.datadir = datadir

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@contextmanager
def running() -> Iterator[PgServer]:
    """Start a server, yield it, stop it and delete its data dir."""
    bin_ = bindir()
    if bin_ is None:
        raise RuntimeError("PostgreSQL is not installed (make deps installs Debian's postgresql)")
    as_user = _as_user()
    uid, gid = (pwd.getpwnam('postgres').pw_uid, pwd.getpwnam('postgres').pw_gid) if as_user else (None, None)
    top = Path(tempfile.mkdtemp(prefix="callfleet-pg-"))
    datadir = top / "data"
    datadir.mkdir()
    if uid is not None and gid is not None:
        os.chown(top, uid, gid)
        os.chown(datadir, uid, gid)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    subprocess.run([str(bin_ / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync", "--no-instructions"], check=True, capture_output=True, **as_user, env=env,
                   cwd=top)
    port = _free_port()
    log = (top / "server.log").open("w")
    if uid is not None and gid is not None:
        os.chown(top / "server.log", uid, gid)
    proc = subprocess.Popen(
        [str(bin_ / "postgres"), "-D", str(datadir), "-h", "127.0.0.1", "-p", str(port), "-k", str(top),
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200",
         "-c", "shared_buffers=32MB"],
        stdout=log, stderr=subprocess.STDOUT, **as_user, env=env, cwd=top, start_new_session=True)
    server = PgServer(port, datadir)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(server.url(), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {(top / 'server.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(top, ignore_errors=True)
