"""The lab dynamic provider's create and delete, on a real lab, without the engine.

The engine would call these methods in its provider process; here they are called
directly, so this runs wherever the lab runs (no Pulumi CLI needed) and nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.lab.topology import LabParams, lab_estate
from orchestrator.provision.lab_substrate import LabSiteProvider
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
