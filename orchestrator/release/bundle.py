"""Build and verify release bundles.

A bundle is a directory: the release payload (Kamailio config, routing data, ...)
plus `manifest.yaml` listing name, version, build time and every file with its
sha256. `verify` refuses missing, extra or modified files. Format: docs/RELEASES.md.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import ReleaseVersion

MANIFEST = "manifest.yaml"
SOURCE_META = "release.yaml"


class FileEntry(BaseModel):
    """One payload file of a bundle."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Manifest(BaseModel):
    """The manifest.yaml of a bundle."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    version: ReleaseVersion
    built_at: datetime
    entrypoint: str = "kamailio.cfg"
    files: tuple[FileEntry, ...]


class VerifyReport(BaseModel):
    """What `release verify` found."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bundle: str
    name: str
    version: str
    ok: bool
    files: int
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def _payload_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def build_bundle(*, source: Path, version: str, out_dir: Path) -> Path:
    """Copy `source` into `out_dir/<name>-<version>/` with a manifest; returns the bundle."""
    if not source.is_dir():
        raise InvalidInput(f"{source}: not a release source directory")
    meta_path = source / SOURCE_META
    meta = yaml.safe_load(meta_path.read_text()) if meta_path.exists() else {}
    name = str((meta or {}).get("name", "callserver"))
    entry = str((meta or {}).get("entrypoint", "kamailio.cfg"))
    if not (source / entry).is_file():
        raise InvalidInput(f"{source}: entrypoint {entry} is missing")
    try:
        bundle = out_dir / f"{name}-{version}"
        files = []
        staging = out_dir / f".{name}-{version}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        for f in _payload_files(staging):
            rel = f.relative_to(staging).as_posix()
            files.append(FileEntry(path=rel, sha256=sha256_of(f), size=f.stat().st_size))
        manifest = Manifest(name=name, version=version, built_at=datetime.now(UTC),
                            entrypoint=entry, files=tuple(files))
    except ValidationError as exc:
        shutil.rmtree(out_dir / f".{name}-{version}.tmp", ignore_errors=True)
        err = exc.errors()[0]
        raise InvalidInput(f"--version {version!r}: {err['msg']}") from None
    (staging / MANIFEST).write_text(yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False))
    shutil.rmtree(bundle, ignore_errors=True)
    staging.rename(bundle)
    return bundle


def read_manifest(bundle: Path) -> Manifest:
    """Parse a bundle's manifest (InvalidInput when absent or malformed)."""
    path = bundle / MANIFEST
    try:
        return Manifest.model_validate(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise InvalidInput(f"{bundle}: no {MANIFEST}: not a release bundle") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvalidInput(f"{path}: malformed manifest ({str(exc).splitlines()[0]})") from None


def verify_bundle(bundle: Path) -> VerifyReport:
    """Check every file against the manifest; the report lists what differs."""
    manifest = read_manifest(bundle)
    expected = {f.path: f.sha256 for f in manifest.files}
    present = {p.relative_to(bundle).as_posix(): p for p in _payload_files(bundle)}
    missing = tuple(sorted(set(expected) - set(present)))
    extra = tuple(sorted(set(present) - set(expected)))
    modified = tuple(sorted(p for p in expected.keys() & present.keys()
                            if sha256_of(present[p]) != expected[p]))
    return VerifyReport(bundle=str(bundle), name=manifest.name, version=manifest.version,
                        ok=not (missing or extra or modified), files=len(expected),
                        missing=missing, extra=extra, modified=modified)


def require_verified(bundle: Path) -> Manifest:
    """Verify a bundle or raise InvalidInput naming what is wrong."""
    report = verify_bundle(bundle)
    if not report.ok:
        parts = [f"{k} {', '.join(v)}" for k, v in
                 (("missing", report.missing), ("extra", report.extra), ("modified", report.modified)) if v]
        raise InvalidInput(f"{bundle}: release bundle fails verification: {'; '.join(parts)}")
    return read_manifest(bundle)
