"""Pulumi mocks for the provisioning tests.

Only the Pulumi engine is mocked (pulumi.runtime.set_mocks): the program, the estate model,
the inventory code and the policy rules all run for real. The mocks compute the outputs a
real engine would report: the LabSite dynamic resource returns what its provider's create
returns (lab_site_outputs, without touching the lab), an OpenStack port reports the fixed
IPs it was asked for, and every resource gets an id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor

from orchestrator.lab import control
from orchestrator.provision.facts import ResourceView
from tests.conftest import cli
from tests.labnet import free_base

LAB_BASE = free_base("198.18.79")  # neither a developer's lab (198.18.77) nor the lab test session's (198.18.78)


class EstateMocks(pulumi.runtime.Mocks):
    """Computed outputs as the engine and the providers would report them."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        from orchestrator.provision.facts import LAB_SITE_TYPE
        from orchestrator.provision.lab_substrate import lab_site_id, lab_site_outputs

        inputs = dict(args.inputs)
        if args.typ == LAB_SITE_TYPE:
            props = {k: v for k, v in inputs.items() if k != "__provider"}
            return lab_site_id(props), lab_site_outputs(props)
        if args.typ == "openstack:networking/port:Port":
            inputs["allFixedIps"] = [f["ipAddress"] for f in inputs.get("fixedIps", [])]
        elif args.typ == "openstack:compute/instance:Instance":
            inputs["accessIpV4"] = ""
        return f"{args.name}-id", inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@dataclass(frozen=True)
class Registration:
    """One resource registered with the (mock) engine."""

    urn: str
    type: str
    name: str
    parent: str | None
    provider: str | None
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    dependencies: tuple[str, ...]

    def view(self) -> ResourceView:
        """As a stack policy would see it: its outputs, parent and dependencies."""
        return ResourceView(type=self.type, name=self.name, urn=self.urn, parent=self.parent,
                            props=self.outputs, dependencies=self.dependencies)


class RecordingMonitor(MockMonitor):  # type: ignore[misc]
    """The stock mock monitor, also keeping each registration's parent and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            state = self.resources[response.urn].state
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            self.registrations.append(Registration(
                urn=response.urn, type=request.type, name=request.name, parent=request.parent or None,
                provider=request.provider or None, custom=bool(request.custom), inputs=dict(inputs),
                outputs=dict(state),
                dependencies=tuple(request.dependencies)))
        return response


# The toolchain note: set the mocks before any program module is imported.
pulumi.runtime.set_mocks(EstateMocks(), project="callfleet", stack="test", preview=False)


@dataclass
class ProgramRun:
    """The registrations of one program run and the values of the outputs asked for."""

    registrations: list[Registration]
    values: dict[str, Any]

    def of_type(self, type_: str) -> list[Registration]:
        """The registrations of one resource type, in registration order."""
        return [r for r in self.registrations if r.type == type_]

    def one(self, name: str) -> Registration:
        """The single registration with this logical name."""
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"{len(found)} resources named {name}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        """The registration with this URN."""
        return next(r for r in self.registrations if r.urn == urn)

    def views(self) -> list[ResourceView]:
        """Every resource as a stack policy sees it."""
        return [r.view() for r in self.registrations]


@pytest.fixture
def run_program() -> Callable[..., ProgramRun]:
    """Run a function declaring resources under fresh mocks; resolve the outputs it returns."""

    def run(declare: Callable[[], dict[str, pulumi.Output[Any]]], *, preview: bool = False) -> ProgramRun:
        monitor = RecordingMonitor(EstateMocks())
        pulumi.runtime.set_mocks(EstateMocks(), project="callfleet", stack="test", preview=preview,
                                 monitor=monitor)
        values: dict[str, Any] = {}

        @pulumi.runtime.test
        def program() -> pulumi.Output[Any]:
            outputs = declare()
            keys = list(outputs)

            def keep(resolved: list[Any]) -> None:
                values.update(zip(keys, resolved, strict=True))

            return pulumi.Output.all(*[outputs[k] for k in keys]).apply(keep)

        program()
        return ProgramRun(registrations=list(monitor.registrations), values=values)

    return run


@pytest.fixture(autouse=True)
def _event_loop() -> None:
    # pulumi.runtime.test needs a current event loop in the main thread.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture
def example_inventory() -> Path:
    """The example production inventory shipped with the project (six sites, two hosts each)."""
    return Path(__file__).resolve().parents[3] / "inventory" / "production.example.yml"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real lab brought up by `callfleet lab up` on LAB_BASE (the shared parts a lab stack
    needs), once for the module's tests."""
    state_dir = tmp_path_factory.mktemp("provider") / "lab"
    proc = cli("lab", "up", "--state-dir", str(state_dir), "--base", LAB_BASE, "--json")
    try:
        assert proc.returncode == 0, proc.stderr
        yield state_dir
    finally:
        cli("lab", "down", "--state-dir", str(state_dir))  # also after a failed up: nothing may linger


def callserver_states(state_dir: Path, *, site: str | None = None) -> set[str]:
    """The statuses of the lab's call servers (of one site, or all)."""
    return {c.status for c in control.lab_status(state_dir=state_dir).components
            if c.kind == "callserver" and (site is None or c.site == site)}
