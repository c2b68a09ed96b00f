"""Shared CLI plumbing: inventory option, JSON/human output, error mapping."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from orchestrator.errors import CallfleetError

P = ParamSpec("P")
R = TypeVar("R")

# Pipes and CI logs get a wide, fixed layout instead of rich's 80-column default.
console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, highlight=False)

DEFAULT_LAB_DIR = Path(os.environ.get("CALLFLEET_LAB_DIR", f"/tmp/callfleet-lab-{os.getuid()}"))


def default_inventory() -> Path:
    """The inventory every command uses unless told otherwise: $CALLFLEET_INVENTORY,
    else the one `callfleet lab up` wrote in the default lab state directory."""
    env = os.environ.get("CALLFLEET_INVENTORY")
    return Path(env) if env else DEFAULT_LAB_DIR / "inventory.yml"


InventoryOpt = Annotated[
    Path | None,
    typer.Option("--inventory", "-i", help="Ansible YAML inventory (default: $CALLFLEET_INVENTORY, "
                 "else the lab's inventory written by `callfleet lab up`).", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def emit_json(data: Any) -> None:
    """Print JSON for pipelines (pydantic models are dumped in JSON mode)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn CallfleetError into one red line and its documented exit code."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CallfleetError as exc:
            err_console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
            if exc.hint:
                err_console.print(f"[yellow]hint:[/] {exc.hint}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper
