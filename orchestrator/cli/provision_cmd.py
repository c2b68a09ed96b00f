"""`callfleet provision preview|up|destroy|outputs|inventory --stack S [--json]`.

Every command drives the Pulumi engine through the Automation API; without the `pulumi`
CLI on the machine each one fails with the install hint and exit code 3.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli.common import JsonOpt, console, emit_json, handle_errors
from orchestrator.cli.documents import ProvisionedInventory, ProvisionOutputs
from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import write_inventory
from orchestrator.provision.automation import OperationResult, Progress, PulumiAutomation, locate_pulumi
from orchestrator.provision.project import locate_project, policy_pack_dir
from orchestrator.provision.stack_outputs import ESTATE_OUTPUT, estate_from_outputs

app = typer.Typer(help="Provision the estate with Pulumi (program, CrossGuard policies, stack outputs). "
                       "Needs the Pulumi CLI: https://www.pulumi.com/docs/install/",
                  no_args_is_help=True)

StackOpt = Annotated[str, typer.Option("--stack", help="The Pulumi stack (e.g. lab, prod).",
                                       show_default=False)]
_STACK_RE = re.compile(r"^(?:[A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$")
_SYMBOLS = {"create": "+", "update": "~", "delete": "-", "replace": "+-", "create-replacement": "++",
            "delete-replaced": "--", "read": ">"}


def _engine(stack: str) -> tuple[PulumiAutomation, Path]:
    # The engine first: without it nothing else is worth checking or reporting.
    locate_pulumi()
    if not _STACK_RE.fullmatch(stack):
        raise InvalidInput(f"--stack: {stack!r} is not a Pulumi stack name ([org/[project/]]name)")
    project = locate_project(start=Path.cwd())
    return PulumiAutomation(work_dir=project, policy_packs=[policy_pack_dir(project)]), project


def _show(progress: Progress) -> None:
    if progress.kind == "step":
        symbol = _SYMBOLS.get(progress.op or "", " ")
        console.print(f"  {symbol:<2} {progress.op:<10} {progress.resource_type} {progress.resource}")
    elif progress.kind == "policy":
        console.print(f"  [red]policy[/] {progress.message}", soft_wrap=True)
    else:
        console.print(f"  [red]error[/] {progress.message}", soft_wrap=True)


def _summary(result: OperationResult) -> str:
    changes = ", ".join(f"{n} {op}" for op, n in sorted(result.changes.items()) if n) or "no changes"
    advisory = [v for v in result.violations if v.level != "mandatory"]
    policies = f"; {len(advisory)} advisory policy warning(s)" if advisory else ""
    return f"{result.operation} of stack {result.stack}: {changes}{policies}"


def _report(result: OperationResult, json_out: bool) -> None:
    if json_out:
        emit_json(result)
        return
    console.print(_summary(result))


@app.command()
@handle_errors
def preview(stack: StackOpt, json_out: JsonOpt = False) -> None:
    """What `up` would change; the CrossGuard policy pack judges it (violations: exit 2)."""
    engine, _ = _engine(stack)
    _report(engine.preview(stack=stack, on_progress=None if json_out else _show), json_out)


@app.command()
@handle_errors
def up(stack: StackOpt, json_out: JsonOpt = False) -> None:
    """Create or update the stack's resources, policy pack enforced."""
    engine, _ = _engine(stack)
    _report(engine.up(stack=stack, on_progress=None if json_out else _show), json_out)


@app.command()
@handle_errors
def destroy(
    stack: StackOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (required when not interactive).")]
    = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete every resource of the stack (asks first unless --yes)."""
    engine, _ = _engine(stack)
    if not yes:
        if json_out or not sys.stdin.isatty():
            raise InvalidInput(f"destroying stack {stack} needs --yes when nobody can be asked")
        if not typer.confirm(f"destroy every resource of stack {stack}?", default=False):
            raise typer.Exit(1)
    _report(engine.destroy(stack=stack, on_progress=None if json_out else _show), json_out)


def _brief(value: Any) -> str:
    if isinstance(value, dict) and "sites" in value and "name" in value:
        hosts = sum(len(s.get("hosts", [])) for s in value["sites"])
        return f"estate {value['name']}: {len(value['sites'])} sites, {hosts} hosts"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


@app.command()
@handle_errors
def outputs(stack: StackOpt, json_out: JsonOpt = False) -> None:
    """The stack's outputs (the provisioned estate among them)."""
    engine, _ = _engine(stack)
    values = engine.outputs(stack=stack)
    if json_out:
        emit_json(ProvisionOutputs(stack=stack, outputs=dict(values)))
        return
    table = Table(title=f"outputs of stack {stack}")
    table.add_column("output")
    table.add_column("value")
    for key, value in values.items():
        table.add_row(key, _brief(value))
    console.print(table)


@app.command()
@handle_errors
def inventory(
    stack: StackOpt,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the inventory "
                                             "(default: `inventory/<stack>.yml` in the project).",
                                             show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the Ansible inventory from the stack's outputs (through the estate model)."""
    engine, project = _engine(stack)
    estate = estate_from_outputs(engine.outputs(stack=stack), stack=stack)
    path = out or project / "inventory" / f"{stack.rsplit('/', 1)[-1]}.yml"
    write_inventory(estate, path, header=f"# written by `callfleet provision inventory --stack {stack}` "
                                         f"from its `{ESTATE_OUTPUT}` output\n")
    if json_out:
        emit_json(ProvisionedInventory(stack=stack, inventory=str(path), estate=estate.name,
                                       sites=len(estate.sites), hosts=len(estate.hosts)))
    else:
        console.print(f"{path}: estate {estate.name}, {len(estate.sites)} sites, {len(estate.hosts)} hosts "
                      f"(from stack {stack})")
