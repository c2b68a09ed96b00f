"""The JSON documents callfleet prints under `--json`, as models and as shipped JSON Schemas.

Every document a `--json` command prints has a model (`DOCUMENTS`; `COMMANDS` says which
command prints which); its JSON Schema is generated from the model and shipped beside this
file (`<name>.schema.json`), so a pipeline can validate what it reads and refuse a
`schema_version` it does not know. `python -m orchestrator.schemas` rewrites the files (and
`python -m orchestrator.schemas --list` names them); unit tests fail when they drift from the
models or a `--json` command has none.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.cli.common import SCHEMA_VERSION
from orchestrator.cli.documents import (
    AlertTest,
    Approval,
    EstateValidation,
    FailedCallers,
    FaultList,
    FaultsCleared,
    IncidentList,
    IncidentShow,
    LabDown,
    LabUp,
    OutcomeDocument,
    ProbeDocument,
    ProvisionedInventory,
    ProvisionOutputs,
    ReleaseBuilt,
    RunEvents,
    RunList,
    RunStatusDocument,
    Steering,
    TrafficStarted,
)
from orchestrator.estate.model import Estate
from orchestrator.fabricops import RunReport, SiteDiag
from orchestrator.gate.runner import GateResult
from orchestrator.lab.control import LabStatus
from orchestrator.lab.faults import Fault
from orchestrator.lab.traffic import TrafficReport
from orchestrator.provision.automation import OperationResult
from orchestrator.release.bundle import VerifyReport
from orchestrator.release.package import PackageResult
from orchestrator.report.model import RolloutReport
from orchestrator.rollout.plan import Plan
from orchestrator.site.upgrade import SiteReport
from orchestrator.watch.monthly import MonthlyReport
from orchestrator.watch.report import RoundReport


class ErrorDetail(BaseModel):
    """What failed."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    message: str
    hint: str | None


class ErrorDocument(BaseModel):
    """Any command's `--json` output when it fails with a documented exit code."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail
    exit_code: int


DOCUMENTS: dict[str, type[BaseModel]] = {
    "error": ErrorDocument,
    "estate": Estate,
    "estate-validation": EstateValidation,
    "plan": Plan,
    "outcome": OutcomeDocument,
    "run-status": RunStatusDocument,
    "run-list": RunList,
    "run-events": RunEvents,
    "approval": Approval,
    "gate-result": GateResult,
    "probe-report": ProbeDocument,
    "exec-report": RunReport,
    "diag-report": SiteDiag,
    "watch-round": RoundReport,
    "lab-status": LabStatus,
    "lab-up": LabUp,
    "lab-down": LabDown,
    "lab-fault": Fault,
    "lab-faults": FaultList,
    "lab-faults-cleared": FaultsCleared,
    "traffic-started": TrafficStarted,
    "traffic-report": TrafficReport,
    "site-report": SiteReport,
    "steering": Steering,
    "release-build": ReleaseBuilt,
    "release-verify": VerifyReport,
    "release-package": PackageResult,
    "provision-operation": OperationResult,
    "provision-outputs": ProvisionOutputs,
    "provision-inventory": ProvisionedInventory,
    "alert-test": AlertTest,
    "incidents": IncidentList,
    "incident-show": IncidentShow,
    "failed-callers": FailedCallers,
    "rollout-report": RolloutReport,
    "monthly-report": MonthlyReport,
}

# The document each `--json` command prints on success (any failure with a documented exit
# code prints `error`). `watch` prints one `watch-round` per line (JSON Lines); `rollout
# history` prints `run-list`, or `run-events` for one run.
COMMANDS: dict[str, tuple[str, ...]] = {
    "estate show": ("estate",),
    "estate validate": ("estate-validation",),
    "plan": ("plan",),
    "upgrade": ("outcome",),
    "rollout status": ("run-status",),
    "rollout history": ("run-list", "run-events"),
    "rollout resume": ("outcome",),
    "rollout advance": ("outcome",),
    "rollout abort": ("outcome",),
    "rollout undo": ("outcome",),
    "rollout approve": ("approval",),
    "gate": ("gate-result",),
    "probe": ("probe-report",),
    "exec": ("exec-report",),
    "diag": ("diag-report",),
    "watch": ("watch-round",),
    "lab up": ("lab-up",),
    "lab status": ("lab-status",),
    "lab down": ("lab-down",),
    "lab fault cut": ("lab-fault",),
    "lab fault freeze": ("lab-fault",),
    "lab fault poweroff": ("lab-fault",),
    "lab fault disk-full": ("lab-fault",),
    "lab fault stop-service": ("lab-fault",),
    "lab fault list": ("lab-faults",),
    "lab fault clear": ("lab-faults-cleared",),
    "lab traffic start": ("traffic-started",),
    "lab traffic stop": ("traffic-report",),
    "lab traffic report": ("traffic-report",),
    "site upgrade": ("site-report",),
    "site rollback": ("site-report",),
    "site drain": ("steering",),
    "site undrain": ("steering",),
    "release build": ("release-build",),
    "release verify": ("release-verify",),
    "release package": ("release-package",),
    "provision preview": ("provision-operation",),
    "provision up": ("provision-operation",),
    "provision destroy": ("provision-operation",),
    "provision outputs": ("provision-outputs",),
    "provision inventory": ("provision-inventory",),
    "alert test": ("alert-test",),
    "incidents": ("incidents",),
    "report run": ("rollout-report",),
    "report monthly": ("monthly-report",),
    "incidents show": ("incident-show",),
    "incidents callers": ("failed-callers",),
}


def generate(name: str) -> dict[str, Any]:
    """The JSON Schema of a document: its model's schema, with the `schema_version` every
    JSON object callfleet prints carries."""
    schema = DOCUMENTS[name].model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"callfleet/{name}.schema.json"
    schema["properties"] = {"schema_version": {"const": SCHEMA_VERSION}, **schema.get("properties", {})}
    schema["required"] = ["schema_version", *schema.get("required", [])]
    return schema


def shipped(name: str) -> dict[str, Any]:
    """The schema file shipped in the package."""
    data: dict[str, Any] = json.loads((files("orchestrator.schemas") / f"{name}.schema.json").read_text())
    return data


def validate(name: str, document: Any) -> None:
    """Raise jsonschema.ValidationError unless `document` is a valid `name` document."""
    import jsonschema

    jsonschema.validate(document, shipped(name))


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.schemas [NAME | --write]`: list the documents and the commands that
    print them, print one shipped schema, or (developers) rewrite every file from the models."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if args == ["--write"]:
        here = Path(__file__).parent
        for name in DOCUMENTS:
            (here / f"{name}.schema.json").write_text(json.dumps(generate(name), indent=2, sort_keys=True) + "\n")
            print(f"wrote {name}.schema.json")
        return 0
    if len(args) == 1 and args[0] in DOCUMENTS:
        print(json.dumps(shipped(args[0]), indent=2, sort_keys=True))
        return 0
    if args and args != ["--list"]:
        print("usage: python -m orchestrator.schemas [--list | NAME | --write]", file=sys.stderr)
        return 2
    for name in DOCUMENTS:
        printed_by = [c for c, docs in COMMANDS.items() if name in docs] or ["any --json command that fails"]
        print(f"{name:<20} {name}.schema.json  ({', '.join(printed_by)})")
    return 0
