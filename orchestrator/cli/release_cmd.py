"""`callfleet release build|verify|package`: release bundles and their Debian packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import JsonOpt, console, emit_json, handle_errors
from orchestrator.cli.documents import ReleaseBuilt
from orchestrator.release.bundle import build_bundle, verify_bundle
from orchestrator.release.package import DEFAULT_ROOT, package_release
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
    """Build a bundle `<out>/<name>-<version>/` from a release source directory.

    The name comes from the source's release.yaml; name and version are checked before
    anything is written, symlinks in the source are refused, and the bundle is assembled
    inside `--out` and renamed into place (nothing outside `--out` is written or deleted)."""
    bundle = build_bundle(source=src_dir, version=version, out_dir=out or default_store())
    report = verify_bundle(bundle)
    if json_out:
        emit_json(ReleaseBuilt(bundle=str(bundle), version=version, files=report.files))
    else:
        console.print(f"built {bundle} ({report.files} files)")


@app.command()
@handle_errors
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (with manifest.yaml).")],
    json_out: JsonOpt = False,
) -> None:
    """Check the whole tree against the manifest (exit 2 on any difference).

    Refused: missing, extra or modified files at any depth, a wrong size, symlinks, FIFOs,
    devices, manifest entries that are absolute, contain `..` or repeat, an entrypoint
    outside the listed files. The digest printed names the verified content."""
    report = verify_bundle(bundle)
    if json_out:
        emit_json(report)
    elif report.ok:
        console.print(f"{bundle}: ok, release {report.version}, {report.files} files verified, "
                      f"digest sha256:{report.digest}")
    else:
        for kind, files in (("missing", report.missing), ("extra", report.extra), ("modified", report.modified),
                            ("unsafe", report.unsafe)):
            for f in files:
                console.print(f"[bold red]{kind}[/] {f}")
        console.print(f"{bundle}: [bold red]verification failed[/]")
    if not report.ok:
        raise typer.Exit(2)


@app.command()
@handle_errors
def package(
    bundle: Annotated[Path, typer.Argument(help="Verified bundle directory (with manifest.yaml).")],
    repo: Annotated[Path, typer.Option(help="Flat APT repository directory to add the package to "
                                       "(created if absent).")],
    root: Annotated[str, typer.Option(help="The call-server root on the hosts (the role's callserver_root): "
                                      "files install under <root>/releases/<version>/.")] = DEFAULT_ROOT,
    json_out: JsonOpt = False,
) -> None:
    """Turn a verified bundle into the Debian package `<name>-release-<version>` in a flat APT repository.

    One package per release, so versions install side by side; the repository's Packages,
    Packages.gz and Release are rewritten atomically. Hosts use it with
    `callserver_release_source: package` and `callserver_package_repository:
    "deb [trusted=yes] URL ./"`. Name mapping: docs/RELEASES.md, "Package releases"."""
    result = package_release(bundle, repo, root=root)
    if json_out:
        emit_json(result)
    else:
        console.print(f"packaged {result.release} as {result.package} {result.version}: {result.deb} "
                      f"({result.files} files under {result.install_dir}); {result.repo} indexes "
                      f"{result.indexed} package(s)")
