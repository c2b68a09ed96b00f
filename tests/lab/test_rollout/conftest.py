"""Fixtures of the whole-rollout lab tests: releases, the policy and journals of a module, the
public caller of a test, the orchestrator processes a test spawns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.rollout.journal import Journal
from tests.conftest import cli
from tests.lab.conftest import Lab, restore_stock
from tests.lab.releases import breaks_after_reconnect, make_release
from tests.lab.test_rollout.rig import FAST, Caller, Spawned
from tests.pg_server import PgServer


@pytest.fixture(scope="module")
def env(lab: Lab, tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> Iterator[dict[str, str]]:
    """Releases, a fast policy, a SQLite journal and a shared PostgreSQL one for this module;
    at the end every site goes back to the stock release, as the lab tests that follow expect."""
    d = tmp_path_factory.mktemp("rollout")
    store = d / "store"
    make_release(store, "5.6.0-lab2")
    make_release(store, "5.6.0-lab3")
    make_release(store, "5.6.0-reconnect-bug", breaks_after_reconnect)
    policy = d / "policy.yml"
    policy.write_text(yaml.safe_dump(FAST))
    shared = pg_server.new_database()
    Journal(shared, create=True)
    yield {"store": str(store), "policy": str(policy), "journal": str(d / "journal.sqlite"), "shared": shared}
    restore_stock(lab)


@pytest.fixture
def traffic(lab: Lab) -> Iterator[Caller]:
    start = cli("lab", "traffic", "start", "--rate", "20", "--duration", "900", "--state-dir", str(lab.state_dir))
    assert start.returncode == 0, start.stderr
    caller = Caller(lab)
    yield caller
    caller.stop()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawned]:
    spawned = Spawned(tmp_path)
    yield spawned
    spawned.kill_all()
