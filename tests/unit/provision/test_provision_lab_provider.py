"""The lab dynamic providers' create, update and delete, on a real lab, without the engine.

The engine would call these methods in its provider process; here they are called
directly, so this runs wherever the lab runs (no Pulumi CLI needed) and nothing is mocked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.lab.ingress import current_ssh_ingress
from orchestrator.lab.machines import access
from orchestrator.lab.topology import LabParams, caller_address, lab_estate, probe_address
from orchestrator.provision.lab_substrate import LabSiteProvider, LabSshIngressProvider, lab_ingress_props
from orchestrator.provision.stack_outputs import host_record

from .conftest import LAB_BASE, callserver_states

pytestmark = pytest.mark.lab


@pytest.mark.timeout(900)  # the fixture's lab up counts too
def test_delete_and_create_stop_and_start_the_site_through_the_lab_code(lab_dir: Path) -> None:
    estate = lab_estate(LabParams(base=LAB_BASE), lab_dir / "machines")
    props = {"site": "site2", "stateDir": str(lab_dir),
             "hosts": [host_record(h) for h in estate.site("site2").hosts], "isolation": "process"}
    provider = LabSiteProvider()
    assert callserver_states(lab_dir, site="site2") == {"running"}

    provider.delete(f"{lab_dir}#site2", props)
    assert "running" not in callserver_states(lab_dir, site="site2")
    assert callserver_states(lab_dir, site="site1") == {"running"}  # one site at a time

    created = provider.create(props)
    assert callserver_states(lab_dir, site="site2") == {"running"}
    assert created.id == f"{lab_dir}#site2"
    assert created.outs == {**props, "isolation": "process"}


def _ssh_from(lab_dir: Path, source: str, host: str) -> int:
    """Open a fresh SSH session to `host` from one of this computer's lab addresses."""
    argv = access.ssh_argv(lab_dir / "machines", host, "true")
    return subprocess.run([argv[0], "-o", f"BindAddress={source}", *argv[1:]], capture_output=True,
                          timeout=30, check=False).returncode


@pytest.mark.timeout(900)
def test_the_ssh_ingress_rule_is_enforced_by_each_call_server(lab_dir: Path) -> None:
    """Admit SSH from the orchestrator's address only: a session from the caller's address
    (another address of the lab network) is refused, the orchestrator's still works; an update
    widens it again and delete takes it off."""
    params = LabParams(base=LAB_BASE)
    own, other = str(probe_address(params)), str(caller_address(params))
    assert _ssh_from(lab_dir, other, "site3-cs1") == 0  # no rule: any lab address

    provider = LabSshIngressProvider()
    props = lab_ingress_props(state_dir=lab_dir, site="site3", cidrs=(f"{own}/32",))
    created = provider.create(props)
    assert created.id == f"{lab_dir}#site3#ssh"
    for host in ("site3-cs1", "site3-cs2"):
        assert f"AllowUsers callfleet@{own}/32" in (current_ssh_ingress(state_dir=lab_dir, host=host) or "")
        assert _ssh_from(lab_dir, other, host) != 0
        assert _ssh_from(lab_dir, own, host) == 0
    assert _ssh_from(lab_dir, other, "site2-cs1") == 0  # one site's rule only

    wider = {**props, "remoteIpPrefixes": [str(params.network)]}
    assert provider.diff(created.id or "", props, wider).changes
    provider.update(created.id or "", props, wider)
    assert _ssh_from(lab_dir, other, "site3-cs1") == 0

    provider.delete(created.id or "", wider)
    assert current_ssh_ingress(state_dir=lab_dir, host="site3-cs1") is None
    assert _ssh_from(lab_dir, other, "site3-cs2") == 0


def test_a_rule_that_would_shut_the_orchestrator_out_changes_nothing(lab_dir: Path) -> None:
    outside = f"{LAB_BASE}.128/25"  # the lab network without the orchestrator's address
    with pytest.raises(InvalidInput, match="would shut the orchestrator out"):
        LabSshIngressProvider().create(lab_ingress_props(state_dir=lab_dir, site="site1", cidrs=(outside,)))
    assert current_ssh_ingress(state_dir=lab_dir, host="site1-cs1") is None
    assert _ssh_from(lab_dir, str(probe_address(LabParams(base=LAB_BASE))), "site1-cs1") == 0
