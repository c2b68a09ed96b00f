"""The callserver role's production path on real machines: systemd hosts (nspawn), a
non-root SSH user with sudo, Kamailio as kamailio.service with callfleet's drop-in.

Two machines of one site on their own bridge and network (198.18.252.0/24, bridge cfms0),
so this runs beside the loopback lab and the substrate tests. The playbooks run through
the same adapter the orchestrator uses (ansible-runner, host keys checked, expected hosts).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest

from orchestrator.ansible import runner
from orchestrator.lab import variants
from tests.lab import machine_rig
from tests.lab.machine_rig import Rig, booted, main_pid, require_root, running_release, sh, write_inventory

pytestmark = pytest.mark.lab

BRIDGE = "cfms0"
NETWORK = IPv4Network("198.18.252.0/24")
HOSTS = ("site1-cs1", "site1-cs2")
STOCK = "5.6.0-lab1"
NEXT = "5.6.0-lab2"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_root()
    state = tmp_path_factory.mktemp("sysd")
    with booted(state, bridge=BRIDGE, network=NETWORK, hosts=HOSTS) as (machines, records):
        inventory, estate = write_inventory(state, NETWORK, records, name="sysd", release=STOCK)
        store = state / "store"
        variants.make_release(store, STOCK)
        variants.make_release(store, NEXT)
        yield Rig(machines=machines, inventory=inventory, estate=estate, store=store, work=state, hosts=HOSTS)


def play(rig: Rig, name: str, version: str | None = None, tag: str = "") -> runner.RunResult:
    extra: dict[str, object] = {}
    if version is not None:
        extra |= {"callserver_target_release": version,
                  "callserver_bundle_dir": str(rig.store / f"callserver-{version}")}
    return machine_rig.play(rig, name, extra, tag)


def install_and_switch(rig: Rig, version: str) -> None:
    pre = play(rig, "preflight", version)
    assert pre.succeeded, pre.failures()
    up = play(rig, "upgrade", version)
    assert up.succeeded, up.failures()


def test_a_release_runs_under_systemd_as_the_unprivileged_service_user(rig: Rig) -> None:
    install_and_switch(rig, STOCK)
    for host in HOSTS:
        assert sh(rig, host, "whoami") == "callfleet"
        assert sh(rig, host, "systemctl is-active kamailio") == "active"
        assert running_release(rig, host) == STOCK
        exec_start = sh(rig, host, "systemctl show -p ExecStart --value kamailio")
        assert "/opt/callserver/bin/callserver-run" in exec_start
        pid = main_pid(rig, host)
        assert sh(rig, host, f"ps -o user= -p {shlex.quote(pid)}") == "kamailio"
        address = rig.estate.host(host).address
        assert f"{address}:5060" in sh(rig, host, "ss -Hlun")


def test_upgrade_and_rollback_switch_releases_through_systemd(rig: Rig) -> None:
    install_and_switch(rig, STOCK)
    before = {h: main_pid(rig, h) for h in HOSTS}
    install_and_switch(rig, NEXT)
    assert {h: running_release(rig, h) for h in HOSTS} == {h: NEXT for h in HOSTS}
    assert all(main_pid(rig, h) != before[h] for h in HOSTS), "a new release means a restart by systemd"
    # both releases installed side by side: rollback is a switch, not a reinstall
    assert sh(rig, HOSTS[0], "ls /opt/callserver/releases").split() == [STOCK, NEXT]
    back = play(rig, "rollback")
    assert back.succeeded, back.failures()
    assert {h: running_release(rig, h) for h in HOSTS} == {h: STOCK for h in HOSTS}


def test_switching_to_the_running_release_changes_and_restarts_nothing(rig: Rig) -> None:
    install_and_switch(rig, STOCK)
    pids = {h: main_pid(rig, h) for h in HOSTS}
    again = play(rig, "upgrade", STOCK, tag="-again")
    assert again.succeeded, again.failures()
    assert all(h.changed == 0 for h in again.hosts.values()), again.hosts
    assert {h: main_pid(rig, h) for h in HOSTS} == pids


def test_a_release_whose_service_fails_to_start_fails_the_switch_and_rolls_back(rig: Rig) -> None:
    install_and_switch(rig, STOCK)
    variants.make_release(rig.store, "5.6.0-dies", variants.dies_at_start)
    pre = play(rig, "preflight", "5.6.0-dies")
    assert pre.succeeded, pre.failures()  # `kamailio -c` passes: the fault shows only at start
    up = play(rig, "upgrade", "5.6.0-dies")
    assert not up.succeeded and set(up.failures()) == set(HOSTS)
    back = play(rig, "rollback", tag="-dies")
    assert back.succeeded, back.failures()
    assert {h: running_release(rig, h) for h in HOSTS} == {h: STOCK for h in HOSTS}
    assert all(sh(rig, h, "systemctl is-active kamailio") == "active" for h in HOSTS)
