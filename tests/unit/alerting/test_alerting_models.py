"""The alert model: frozen, strict, keys derived from the facts, times in UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from orchestrator.alerting import AlertKind, Severity
from tests.unit.alerting.conftest import lyon


def test_keys_default_from_the_facts() -> None:
    a = lyon()
    assert a.incident_id == "lyon/112+18"
    assert a.dedupe_key == "lyon/112+18:gate_failed"
    assert lyon(kind="incident_resolved").incident_id == a.incident_id
    assert lyon(dedupe_key="custom").dedupe_key == "custom"
    assert lyon(failing={}).incident_id == "estate/all"


def test_times_become_utc_and_must_be_aware() -> None:
    paris = timezone(timedelta(hours=2))
    a = lyon(since=datetime(2021, 6, 2, 16, 45, tzinfo=paris))
    assert a.since.utcoffset() == timedelta(0) and a.since.hour == 14
    with pytest.raises(ValidationError):
        lyon(since=datetime(2021, 6, 2, 14, 45))


def test_substitute_numbers_are_ten_digits() -> None:
    assert lyon(substitute_numbers=["04.72.00.00.00", "0800 112 112"]).substitute_numbers == ("0472000000",
                                                                                              "0800112112")
    with pytest.raises(ValidationError):
        lyon(substitute_numbers=["112"])


def test_frozen_and_no_unknown_fields() -> None:
    a = lyon()
    with pytest.raises(ValidationError):
        a.kind = AlertKind.TEST  # type: ignore[misc]
    with pytest.raises(ValidationError):
        lyon(colour="red")
    with pytest.raises(ValidationError):
        lyon(kind="exploded")


def test_release_dumps_with_from_and_to() -> None:
    assert lyon().model_dump(mode="json", by_alias=True)["release"] == {"from": "5.8.1", "to": "5.8.2"}


def test_severity_order() -> None:
    assert Severity.INFO.rank < Severity.WARNING.rank < Severity.CRITICAL.rank
