"""Stack outputs <-> estate model.

The program exports the provisioned estate (the declared estate with every host as the
substrate reports it) under `estate`; `callfleet provision inventory` rebuilds the model
from that output and writes the Ansible inventory with estate_to_inventory, so the
inventory is derived from what was provisioned, never typed by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import Estate, Host

ESTATE_OUTPUT = "estate"
SUBSTRATE_OUTPUT = "substrate"
PEAK_OUTPUT = "peakCps"


def host_record(host: Host, *, address: str | None = None) -> dict[str, Any]:
    """A host as a plain JSON record, optionally at the address the substrate gave it."""
    record = host.model_dump(mode="json")
    if address is not None:
        record["address"] = address
    return record


def provisioned_estate(*, estate: Estate, hosts: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The declared estate with each site's hosts replaced by the provisioned records.

    `hosts` is one list per site, in the estate's site order. The result is validated by
    the estate model before it becomes a stack output.
    """
    if len(hosts) != len(estate.sites):
        raise ValueError(f"{len(hosts)} host lists for {len(estate.sites)} sites")
    doc = estate.model_dump(mode="json")
    for site_doc, records in zip(doc["sites"], hosts, strict=True):
        site_doc["hosts"] = [dict(r) for r in records]
    return Estate.model_validate(doc).model_dump(mode="json")


def estate_from_outputs(outputs: Mapping[str, Any], *, stack: str) -> Estate:
    """The estate recorded in a stack's outputs (InvalidInput when absent or malformed)."""
    raw = outputs.get(ESTATE_OUTPUT)
    if raw is None:
        raise InvalidInput(f"stack {stack} has no `{ESTATE_OUTPUT}` output",
                           hint=f"run `callfleet provision up --stack {stack}` first")
    try:
        return Estate.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"stack {stack}: output {ESTATE_OUTPUT}.{loc}: {err['msg']}") from None
