"""The Pulumi port and its Automation API adapter (the one place that drives the engine).

The adapter runs the program inline (in this process) for the project in its work dir
(Pulumi.yaml, stack config) with the policy packs on every preview and up (an up is
preceded by a preview, so a refused stack gets no resource), consumes the engine's
structured events (on_event) for progress, policy violations and errors, and maps failures
to callfleet's typed errors:
  - the `pulumi` CLI absent                    -> ToolMissing (exit 3), with how to install it
  - stack missing, stack config invalid,
    a mandatory policy violated                -> InvalidInput (exit 2)
  - any other engine or cloud failure          -> RemoteError (exit 4)
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput, RemoteError, ToolMissing
from orchestrator.provision.engine_env import INSTALL_HINT, engine_env, locate_pulumi, policy_pack_arg
from orchestrator.provision.project import PROJECT_NAME

__all__ = ["INSTALL_HINT", "OperationResult", "Progress", "PulumiAutomation", "locate_pulumi"]

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

    def failure(self, *, operation: str, stack: str, detail: str) -> InvalidInput | RemoteError | ToolMissing:
        """The typed error for a failed operation, from what the events said."""
        missing = missing_plugin("\n".join([*self.errors, detail]))
        if missing is not None:
            return missing
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
        # The engine's last words ("update failed" alone says nothing of which step broke).
        said = [line.strip() for line in [*self.errors, *detail.splitlines()] if line.strip()]
        return RemoteError(f"pulumi {operation} failed on stack {stack}: {reason}",
                           hint="the engine said:\n  " + "\n  ".join(said[-12:]) if said else None)


# "no resource plugin 'pulumi-resource-X' found in the workspace at version vV ..." or, when
# the engine tried to download it, "Could not automatically download and install resource
# plugin 'pulumi-resource-X' at version vV, ...".
_MISSING_PLUGIN = re.compile(
    r"(?:no|install) (?P<kind>resource|language|analyzer) plugin '?pulumi-(?:resource|language|analyzer)-"
    r"(?P<name>[\w.-]+?)'?(?: found in the workspace)?(?: at version v?(?P<version>[\w.+-]+?))?[ ,]")


def missing_plugin(text: str) -> ToolMissing | None:
    """ToolMissing naming the plugin to install, when the engine said a plugin is missing."""
    found = _MISSING_PLUGIN.search(text)
    if found is None:
        return None
    kind, name, version = found["kind"], found["name"], found["version"]
    if name == "pulumi-python":
        # Not a downloadable plugin: the shim that runs Python dynamic providers.
        return ToolMissing("the engine found no pulumi-resource-pulumi-python (it runs Python dynamic providers)",
                           hint="it ships with the Pulumi distribution; a `make pulumi` build puts "
                                "callfleet's own beside the engine in .tools/bin")
    install = f"pulumi plugin install {kind} {name}" + (f" {version}" if version else "")
    return ToolMissing(
        f"the Pulumi {kind} plugin {name!r}" + (f" (version {version})" if version else "")
        + " is not installed: the engine needs it for this stack",
        hint=f"install it: `{install}` (it downloads from the plugin's release site); on a machine "
             f"without Internet access: `{install} --file PLUGIN.tar.gz` from a copy of the release")


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
        binary = locate_pulumi()
        self.env = engine_env(binary, env)
        self.policy_packs = [str(policy_pack_arg(p, self.env)) for p in policy_packs]
        try:
            self._command = auto.PulumiCommand(root=str(binary.parent.parent))
        except auto.errors.InvalidVersionError as exc:
            raise ToolMissing(f"the Pulumi CLI at {binary} is too old for this SDK: {exc}",
                              hint=f"upgrade it: {INSTALL_HINT}") from None
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ToolMissing(f"the Pulumi CLI at {binary} does not run: {exc}", hint=INSTALL_HINT) from None

    def _program(self) -> None:
        # Run inline (in this process, the engine connecting to the SDK's language server):
        # no Python language host is needed, and the project's Pulumi.yaml and stack
        # config in work_dir are used as they are.
        from orchestrator.provision.program import main

        main(project_dir=self.work_dir)

    def _stack(self, stack: str, *, create: bool) -> Any:
        auto = self._auto
        opts = auto.LocalWorkspaceOptions(work_dir=str(self.work_dir), env_vars=self.env,
                                          pulumi_command=self._command)
        open_stack = auto.create_or_select_stack if create else auto.select_stack
        try:
            return open_stack(stack_name=stack, project_name=PROJECT_NAME, program=self._program, opts=opts)
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
        """A preview with the policy packs, then `pulumi up` with them if nothing was refused."""
        # The Automation API's up skips the engine's own preview, and stack policies are
        # judged only once every resource is registered: by then an up has created them.
        # The preview refuses a violating stack (InvalidInput) before anything exists.
        self.preview(stack=stack, on_progress=None)
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
