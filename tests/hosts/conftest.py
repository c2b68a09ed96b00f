"""testinfra host checks, run against a live estate over SSH (ansible backend):

    pytest tests/hosts/check_callserver.py --hosts='ansible://callservers' \
        --ansible-inventory=/tmp/callfleet-lab-$(id -u)/inventory.yml --expected-release 5.6.0-lab1

Files are named check_*.py so the main suite (test_*.py) does not collect them
without a target; tests/lab/test_hostchecks.py runs them against the lab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate, Host
from orchestrator.hostcheck.checks import testinfra_host


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--expected-release", default=None,
                     help="release every checked host must run (default: the inventory's)")


@pytest.fixture
def callserver(host: Any, request: pytest.FixtureRequest) -> tuple[Any, Estate, Host, str]:
    """(testinfra host, estate, estate Host, expected release) for the host under test.

    testinfra's `--hosts` picks the hosts; the connection is callfleet's own, built from the
    estate (its known_hosts, strict checking, no ~/.ssh/config), so the checks cannot run
    against a host whose key does not verify, whatever the inventory's ssh arguments say."""
    inventory = Path(request.config.getoption("ansible_inventory"))
    estate = load_inventory(inventory)
    estate_host = estate.host(host.backend.host)
    expected = request.config.getoption("--expected-release") or estate_host.release
    return testinfra_host(estate, estate_host), estate, estate_host, expected
