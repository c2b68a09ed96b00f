"""The Pulumi port and its Automation API adapter (the one place that drives the engine).

The adapter runs the local program of the project (Pulumi.yaml) with the policy packs on
every preview and up, consumes the engine's structured events (on_event) for progress,
policy violations and errors, and maps failures to callfleet's typed errors:
  - the `pulumi` CLI absent                    -> ToolMissing (exit 3), with how to install it
  - stack missing, stack config invalid,
    a mandatory policy violated                -> InvalidInput (exit 2)
  - any other engine or cloud failure          -> RemoteError (exit 4)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput, RemoteError, ToolMissing

INSTALL_URL = "https://www.pulumi.com/docs/install/"
INSTALL_HINT = (f"install the Pulumi CLI: `curl -fsSL https://get.pulumi.com | sh` (see {INSTALL_URL}); "
                "the engine is a separate binary and is not on PyPI: `pip install pulumi` only brings "
                "the Python SDK")
# Must match orchestrator.provision.program.INVALID_INPUT_MARKER (kept literal here so the
# adapter does not import the program, which imports the providers' SDKs).
INVALID_INPUT_MARKER = "[callfleet:invalid-input]"
Operation = Literal["preview", "up", "destroy", "outputs"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Progress(_Frozen):
    """One thing worth telling a user while the engine works."""

    kind: Literal["step", "policy", "diagnostic"]
    message: str
    op: str | None = None
    resource_type: str | None = None
    resource: str | None = None


class PolicyViolation(_Frozen):
    """A policy the stack violated, as the engine reported it."""

    policy: str
    pack: str
    level: str
    message: str
    resource: str | None = None


class OperationResult(_Frozen):
    """What a preview, up or destroy did (or would do)."""

    operation: Operation
    stack: str
    changes: dict[str, int]
    violations: tuple[PolicyViolation, ...] = ()
    outputs: dict[str, Any] = {}


ProgressFn = Callable[[Progress], None]


class ProvisionEngine(Protocol):
    """The port: what callfleet asks of an infrastructure-as-code engine."""

    def preview(self, *, stack: str, on_progress: ProgressFn | None = None) -> OperationResult:
        """What an up would change; the policies judge the result."""

    def up(self, *, stack: str, on_progress: ProgressFn | None = None) -> OperationResult:
        """Create or update the stack's resources, policies enforced."""

    def destroy(self, *, stack: str, on_progress: ProgressFn | None = None) -> OperationResult:
        """Delete the stack's resources."""

    def outputs(self, *, stack: str) -> dict[str, Any]:
        """The stack's outputs (plain values)."""

    def set_config(self, *, stack: str, values: Mapping[str, str]) -> None:
        """Set stack config values (keys without namespace are put under `callfleet:`)."""


def locate_pulumi() -> Path:
    """The `pulumi` CLI: on PATH, else where get.pulumi.com installs it; ToolMissing if absent."""
    found = shutil.which("pulumi")
    if found:
        return Path(found)
    installed = Path.home() / ".pulumi" / "bin" / "pulumi"
    if installed.is_file() and os.access(installed, os.X_OK):
        return installed
    raise ToolMissing("the Pulumi CLI (`pulumi`) is not installed on this machine: "
                      "`callfleet provision` drives the Pulumi engine through the Automation API",
                      hint=INSTALL_HINT)


def _urn_name(urn: str | None) -> str | None:
    return urn.rsplit("::", 1)[-1] if urn else None


def _op_name(op: Any) -> str:
    return str(getattr(op, "value", op))


class EventSink:
    """Collects what the engine reports (on_event) and forwards progress."""

    def __init__(self, on_progress: ProgressFn | None) -> None:
        self.on_progress = on_progress
        self.violations: list[PolicyViolation] = []
        self.errors: list[str] = []

    def _tell(self, progress: Progress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def __call__(self, event: Any) -> None:
        """Handle one pulumi.automation EngineEvent."""
        if event.policy_event is not None:
            pe = event.policy_event
            violation = PolicyViolation(policy=pe.policy_name, pack=pe.policy_pack_name,
                                        level=pe.enforcement_level, message=pe.message.strip(),
                                        resource=_urn_name(pe.resource_urn))
            self.violations.append(violation)
            self._tell(Progress(kind="policy", message=f"{violation.policy}: {violation.message}",
                                resource=violation.resource))
        elif event.resource_pre_event is not None:
            md = event.resource_pre_event.metadata
            op = _op_name(md.op)
            if op != "same":
                self._tell(Progress(kind="step", op=op, resource_type=md.type, resource=_urn_name(md.urn),
                                    message=f"{op} {md.type} {_urn_name(md.urn)}"))
        elif event.diagnostic_event is not None:
            de = event.diagnostic_event
            if de.severity == "error":
                message = de.message.strip()
                self.errors.append(message)
                self._tell(Progress(kind="diagnostic", message=message, resource=_urn_name(de.urn)))

    @property
    def mandatory(self) -> list[PolicyViolation]:
        """The violations that block the operation."""
        return [v for v in self.violations if v.level == "mandatory"]

    def failure(self, *, operation: str, stack: str, detail: str) -> InvalidInput | RemoteError:
        """The typed error for a failed operation, from what the events said."""
        for message in self.errors:
            if INVALID_INPUT_MARKER in message:
                text = message.split(INVALID_INPUT_MARKER, 1)[1].strip()
                return InvalidInput(f"stack {stack}: {text}", hint="see docs/PROVISIONING.md for the stack config")
        if self.mandatory:
            listed = "; ".join(f"{v.policy}: {v.message}" for v in self.mandatory)
            return InvalidInput(f"the policy pack refused stack {stack} ({len(self.mandatory)} "
                                f"violation(s)): {listed}",
                                hint="fix the estate or the stack config; the rules are in docs/PROVISIONING.md")
        reason = self.errors[-1] if self.errors else (detail.strip().splitlines() or ["no detail"])[-1]
        return RemoteError(f"pulumi {operation} failed on stack {stack}: {reason}")


def _changes(op_map: Mapping[Any, int] | None) -> dict[str, int]:
    return {_op_name(k): int(v) for k, v in (op_map or {}).items()}


class PulumiAutomation:
    """ProvisionEngine over the Pulumi Automation API and the local program in `work_dir`."""

    def __init__(self, *, work_dir: Path, policy_packs: Sequence[Path],
                 env: Mapping[str, str] | None = None) -> None:
        # Imported here, not at module level: every `callfleet` command imports the CLI
        # modules, and only `callfleet provision` should pay for loading the Automation API.
        from pulumi import automation as auto

        self._auto = auto
        self.work_dir = work_dir
        self.policy_packs = [str(p) for p in policy_packs]
        self.env = dict(env or {})
        binary = locate_pulumi()
        on_path = shutil.which("pulumi") == str(binary)
        try:
            # root=None runs `pulumi` from PATH; otherwise root/bin/pulumi.
            self._command = auto.PulumiCommand(root=None if on_path else str(binary.parent.parent))
        except auto.errors.InvalidVersionError as exc:
            raise ToolMissing(f"the Pulumi CLI at {binary} is too old for this SDK: {exc}",
                              hint=f"upgrade it: {INSTALL_HINT}") from None
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ToolMissing(f"the Pulumi CLI at {binary} does not run: {exc}", hint=INSTALL_HINT) from None

    def _stack(self, stack: str, *, create: bool) -> Any:
        auto = self._auto
        opts = auto.LocalWorkspaceOptions(work_dir=str(self.work_dir), env_vars=self.env,
                                          pulumi_command=self._command)
        try:
            if create:
                return auto.create_or_select_stack(stack_name=stack, work_dir=str(self.work_dir), opts=opts)
            return auto.select_stack(stack_name=stack, work_dir=str(self.work_dir), opts=opts)
        except auto.errors.StackNotFoundError:
            raise InvalidInput(f"there is no Pulumi stack {stack!r} for the project in {self.work_dir}",
                               hint=f"create and configure it first: `callfleet provision up --stack {stack}` "
                                    "(see docs/PROVISIONING.md)") from None
        except auto.errors.CommandError as exc:
            raise RemoteError(f"pulumi could not open stack {stack}: {_last_line(str(exc))}") from None

    def _run(self, operation: Operation, stack: str, on_progress: ProgressFn | None,
             call: Callable[[Any, EventSink], Any], *, create: bool) -> tuple[Any, EventSink]:
        auto = self._auto
        handle = self._stack(stack, create=create)
        sink = EventSink(on_progress)
        try:
            return call(handle, sink), sink
        except auto.errors.ConcurrentUpdateError:
            raise RemoteError(f"another update is running on stack {stack}",
                              hint="wait for it, or `pulumi cancel` if it died") from None
        except auto.errors.CommandError as exc:
            raise sink.failure(operation=operation, stack=stack, detail=str(exc)) from None

    def preview(self, *, stack: str, on_progress: ProgressFn | None = None) -> OperationResult:
        """`pulumi preview` with the policy packs."""
        result, sink = self._run("preview", stack, on_progress, lambda s, sink: s.preview(
            on_event=sink, policy_packs=self.policy_packs), create=True)
        return OperationResult(operation="preview", stack=stack, changes=_changes(result.change_summary),
                               violations=tuple(sink.violations))

    def up(self, *, stack: str, on_progress: ProgressFn | None = None) -> OperationResult:
        """`pulumi up` with the policy packs."""
        result, sink = self._run("up", stack, on_progress, lambda s, sink: s.up(
            on_event=sink, policy_packs=self.policy_packs), create=True)
        outputs = {k: v.value for k, v in result.outputs.items()}
        return OperationResult(operation="up", stack=stack, changes=_changes(result.summary.resource_changes),
                               violations=tuple(sink.violations), outputs=outputs)

    def destroy(self, *, stack: str, on_progress: ProgressFn | None = None) -> OperationResult:
        """`pulumi destroy` (no policies: nothing is left to judge)."""
        result, _ = self._run("destroy", stack, on_progress, lambda s, sink: s.destroy(on_event=sink),
                              create=False)
        return OperationResult(operation="destroy", stack=stack, changes=_changes(result.summary.resource_changes))

    def outputs(self, *, stack: str) -> dict[str, Any]:
        """The stack's outputs as plain values."""
        result, _ = self._run("outputs", stack, None, lambda s, _sink: s.outputs(), create=False)
        return {k: v.value for k, v in result.items()}

    def set_config(self, *, stack: str, values: Mapping[str, str]) -> None:
        """Set stack config values (creating the stack if needed)."""
        handle = self._stack(stack, create=True)
        config = {(k if ":" in k else f"callfleet:{k}"): self._auto.ConfigValue(value=v)
                  for k, v in values.items()}
        try:
            handle.set_all_config(config)
        except self._auto.errors.CommandError as exc:
            raise RemoteError(f"pulumi could not set the config of stack {stack}: {_last_line(str(exc))}") from None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"
