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
    # Absolute from here on: ansible-runner would take a relative string for inventory text.
    return (Path(env) if env else DEFAULT_LAB_DIR / "inventory.yml").absolute()


InventoryOpt = Annotated[
    Path | None,
    typer.Option("--inventory", "-i", help="Ansible inventory, a file or directory (default: $CALLFLEET_INVENTORY, "
                 "else the lab's inventory written by `callfleet lab up`).", show_default=False,
                 resolve_path=True),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
LimitOpt = Annotated[
    list[str] | None,
    typer.Option("--limit", metavar="SITE[,SITE]", show_default=False,
                 help="Only these sites of the estate (comma-separated, repeatable); the others are left as "
                      "they are. A site the estate does not have is refused (exit 2) before anything is done."),
]


# The version of every JSON document callfleet prints: a pipeline can refuse a shape it
# does not know. Bumped when a field changes meaning or disappears (adding one does not).
SCHEMA_VERSION = 1


def emit_json(data: Any, *, line: bool = False) -> None:
    """Print one JSON document for pipelines (pydantic models are dumped in JSON mode). An
    object gets `schema_version` first; a list is printed as it is (its items are objects).
    `line`: on one line, flushed (a stream of documents, one per line)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    if isinstance(data, dict):
        data = {"schema_version": SCHEMA_VERSION, **data}
    if line:
        sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
        sys.stdout.flush()
        return
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def emit_json_error(exc: CallfleetError) -> None:
    """The error document `--json` promises: what failed, the hint, the exit code."""
    emit_json({"error": {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint},
               "exit_code": exc.exit_code})


def _escape(text: str) -> str:
    """A message is text, not rich markup: `[...]` in a path or key must print as it is."""
    from rich.markup import escape

    return escape(text)


# typer's exit, abort and usage-error exceptions (from click, vendored by recent typer releases).
_CONTROL: tuple[type[BaseException], ...] = (typer.Exit, typer.Abort,
                                             sys.modules[typer.Exit.__module__].ClickException)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn CallfleetError into one red line and its documented exit code."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CallfleetError as exc:
            err_console.print(f"[bold red]error:[/] {_escape(exc.message)}", soft_wrap=True)
            if exc.hint:
                err_console.print(f"[yellow]hint:[/] {_escape(exc.hint)}", soft_wrap=True)
            if kwargs.get("json_out") is True:
                emit_json_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except _CONTROL:
            raise  # typer's own exits and usage errors (RuntimeError subclasses, some of them)
        except Exception as exc:
            # A bug: `run()` prints one line and exits 1; under --json the document comes first.
            if kwargs.get("json_out") is True and not os.environ.get("CALLFLEET_DEBUG"):
                emit_json({"error": {"kind": "InternalError", "message": f"{type(exc).__name__}: {exc}",
                                     "hint": "a bug: set CALLFLEET_DEBUG=1 for the traceback and report it"},
                           "exit_code": 1})
            raise

    return wrapper
