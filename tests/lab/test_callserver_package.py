"""The callserver role's package source on real machines: releases packaged with
`release package` into a flat APT repository, served over HTTP from the host side of the
lab bridge, installed by the role with apt as `callserver-release-<version>`, switched and
rolled back through systemd.

Two machines of one site on their own bridge and network (198.18.253.0/24, bridge cfmp0),
apart from the loopback lab and the other machine tests. The machines have no default
route: the repository on the bridge's host address is the only thing they can fetch from.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest

from orchestrator.ansible import runner
from orchestrator.lab import variants
from orchestrator.lab.machines.net import host_address
from orchestrator.release.bundle import bundle_digest
from orchestrator.release.package import package_name, package_release
from tests.lab import machine_rig
from tests.lab.machine_rig import (
    RepoHandler,
    Rig,
    booted,
    main_pid,
    require_root,
    running_release,
    serving,
    sh,
    write_inventory,
)

pytestmark = pytest.mark.lab

BRIDGE = "cfmp0"
NETWORK = IPv4Network("198.18.253.0/24")
HOSTS = ("site1-cs1", "site1-cs2")
FIRST = "5.6.0-pkg1"
NEXT = "5.6.0-RC2"  # upper case: the role must escape it exactly as `release package` does
UNUSED = "5.6.0-pkg3"  # packaged, only ever installed in check mode
RELEASES = "/opt/callserver/releases"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_root()
    state = tmp_path_factory.mktemp("pkg")
    store, repo = state / "store", state / "repo"
    for version in (FIRST, NEXT, UNUSED):
        package_release(variants.make_release(store, version), repo)
    address = str(host_address(NETWORK).ip)
    # The server binds the bridge's address, so it starts once booting made the bridge (and
    # stops before the bridge goes).
    with booted(state, bridge=BRIDGE, network=NETWORK, hosts=HOSTS) as (machines, records), \
            serving(repo, address) as port:
        # The release source is an inventory value, as in production: the lab differs by inventory only.
        inventory, estate = write_inventory(state, NETWORK, records, name="pkg", release=FIRST, extra_vars={
            "callserver_release_source": "package",
            "callserver_package_repository": f"deb [trusted=yes] http://{address}:{port}/ ./"})
        yield Rig(machines=machines, inventory=inventory, estate=estate, store=store, work=state, hosts=HOSTS,
                  run_vars={})


def play(rig: Rig, name: str, version: str | None = None, tag: str = "", check: bool = False) -> runner.RunResult:
    extra: dict[str, object] = {}
    if version is not None:
        # The digest of the bundle that was packaged: the hosts check the installed manifest against it.
        extra |= {"callserver_target_release": version,
                  "callserver_bundle_digest": bundle_digest(rig.store / f"callserver-{version}")}
    return machine_rig.play(rig, name, extra, tag, check=check)


def install_and_switch(rig: Rig, version: str, tag: str = "") -> tuple[runner.RunResult, runner.RunResult]:
    pre = play(rig, "preflight", version, tag)
    assert pre.succeeded, pre.failures()
    up = play(rig, "upgrade", version, tag)
    assert up.succeeded, up.failures()
    return pre, up


def package_status(rig: Rig, host: str, version: str) -> str:
    """dpkg's status of the release's package on `host` ("installed", or "" when unknown)."""
    name = shlex.quote(package_name("callserver", version))
    return sh(rig, host, f"dpkg-query -W -f='${{db:Status-Status}}' {name} 2>/dev/null || true")


def test_a_packaged_release_installs_with_apt_and_runs_under_systemd(rig: Rig) -> None:
    install_and_switch(rig, FIRST)
    for host in HOSTS:
        assert sh(rig, host, "whoami") == "callfleet"
        assert sh(rig, host, "systemctl is-active kamailio") == "active"
        assert running_release(rig, host) == FIRST
        assert package_status(rig, host, FIRST) == "installed"
        owner = sh(rig, host, f"dpkg -S {RELEASES}/{FIRST}/manifest.yaml")
        assert owner.startswith("callserver-release-5.6.0-pkg1:"), owner
        assert sh(rig, host, "readlink /opt/callserver/current") == f"releases/{FIRST}"
        source = sh(rig, host, "cat /etc/apt/sources.list.d/callserver.list").splitlines()[-1]
        assert source.startswith(f"deb [trusted=yes] http://{host_address(NETWORK).ip}:"), source


def test_check_mode_installs_no_package(rig: Rig) -> None:
    install_and_switch(rig, FIRST)
    dry = play(rig, "preflight", UNUSED, tag="-check", check=True)
    assert dry.succeeded, dry.failures()
    for host in HOSTS:
        assert package_status(rig, host, UNUSED) == ""
        assert UNUSED not in sh(rig, host, f"ls {RELEASES}").split()
        assert running_release(rig, host) == FIRST


def test_the_next_package_installs_beside_and_rollback_switches_back(rig: Rig) -> None:
    install_and_switch(rig, FIRST)
    before = {h: main_pid(rig, h) for h in HOSTS}
    install_and_switch(rig, NEXT)
    assert {h: running_release(rig, h) for h in HOSTS} == {h: NEXT for h in HOSTS}
    assert all(main_pid(rig, h) != before[h] for h in HOSTS), "a new release means a restart by systemd"
    for host in HOSTS:
        assert package_status(rig, host, FIRST) == package_status(rig, host, NEXT) == "installed"
        assert set(sh(rig, host, f"ls {RELEASES}").split()) == {FIRST, NEXT}
    assert package_name("callserver", NEXT) == "callserver-release-5.6.0-+r+c2"
    back = play(rig, "rollback")
    assert back.succeeded, back.failures()
    assert {h: running_release(rig, h) for h in HOSTS} == {h: FIRST for h in HOSTS}
    assert all(sh(rig, h, "systemctl is-active kamailio") == "active" for h in HOSTS)
    # Rollback is a switch: the package of the release rolled back from stays installed.
    assert all(package_status(rig, h, NEXT) == "installed" for h in HOSTS)


def test_a_second_identical_run_changes_nothing_and_fetches_nothing(rig: Rig) -> None:
    install_and_switch(rig, FIRST)
    pids = {h: main_pid(rig, h) for h in HOSTS}
    seen = len(RepoHandler.requests)
    pre, up = install_and_switch(rig, FIRST, tag="-again")
    for result in (pre, up):
        assert all(h.changed == 0 for h in result.hosts.values()), result.hosts
    assert {h: main_pid(rig, h) for h in HOSTS} == pids
    assert RepoHandler.requests[seen:] == [], "an installed package needs no index refresh"
