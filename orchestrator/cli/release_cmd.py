"""`callfleet release build|verify`: release bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import JsonOpt, console, emit_json, handle_errors
from orchestrator.release.bundle import build_bundle, verify_bundle
from orchestrator.release.store import default_store

app = typer.Typer(help="Release bundles: a payload plus manifest.yaml with every file's sha256 "
                       "(format: docs/RELEASES.md).", no_args_is_help=True)


@app.command()
@handle_errors
def build(
    src_dir: Annotated[Path, typer.Argument(help="Release source directory, e.g. releases/stock.")],
    version: Annotated[str, typer.Option(help="Version of the release to build.")],
    out: Annotated[Path | None, typer.Option(help="Release store to write into "
                                             "(default: $CALLFLEET_RELEASE_STORE or the lab's bundles/).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Build a bundle `<out>/callserver-<version>/` from a release source directory."""
    bundle = build_bundle(source=src_dir, version=version, out_dir=out or default_store())
    report = verify_bundle(bundle)
    if json_out:
        emit_json({"bundle": str(bundle), "version": version, "files": report.files})
    else:
        console.print(f"built {bundle} ({report.files} files)")


@app.command()
@handle_errors
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (with manifest.yaml).")],
    json_out: JsonOpt = False,
) -> None:
    """Check every file against the manifest; refuse missing, extra or modified files (exit 2)."""
    report = verify_bundle(bundle)
    if json_out:
        emit_json(report)
    elif report.ok:
        console.print(f"{bundle}: ok, release {report.version}, {report.files} files verified")
    else:
        for kind, files in (("missing", report.missing), ("extra", report.extra), ("modified", report.modified)):
            for f in files:
                console.print(f"[bold red]{kind}[/] {f}")
        console.print(f"{bundle}: [bold red]verification failed[/]")
    if not report.ok:
        raise typer.Exit(2)
