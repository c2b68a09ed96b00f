"""A call server is running, listening on its own address, on the expected release,
and its control socket answers. The same checks the orchestrator runs after upgrades."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.estate.model import Estate, Host
from orchestrator.hostcheck.checks import CHECKS


@pytest.mark.parametrize("check", list(CHECKS))
def test_callserver(callserver: tuple[Any, Estate, Host, str], check: str) -> None:
    th, estate, host, expected = callserver
    ok, detail = CHECKS[check](th, estate, host, expected)
    assert ok, f"{host.name}: {check}: {detail} (expected release {expected})"
