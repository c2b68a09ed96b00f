"""Build and verify release bundles: the integrity boundary between a release and the hosts.

A bundle is a directory: the release payload (Kamailio config, routing data, ...) plus
`manifest.yaml` listing name, version, build time, entrypoint and every file with its
size and sha256. Verification walks the whole tree and refuses anything the manifest
does not vouch for: a missing, extra or modified file at any depth, a symlink, FIFO,
device or socket, a manifest entry that is absolute, climbs out with `..` or appears
twice, a wrong size, an entrypoint outside the verified files. `build` never writes or
deletes outside its store, refuses symlinks in the source and writes atomically.
Format and threat model: docs/RELEASES.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import Name, ReleaseVersion
from orchestrator.userfile import key_text, load_yaml

MANIFEST = "manifest.yaml"
SOURCE_META = "release.yaml"


def _safe_relative(path: str) -> str:
    """A plain relative POSIX path inside the bundle: no absolute, `..`, `.`, empty or odd parts."""
    pure = PurePosixPath(path)
    if (not path or path.startswith("/") or "\\" in path or "\0" in path or str(pure) != path
            or any(part in ("", ".", "..") for part in pure.parts)):
        raise ValueError(f"{path!r} is not a plain relative path inside the bundle")
    return path


RelPath = Annotated[str, AfterValidator(_safe_relative)]


class FileEntry(BaseModel):
    """One payload file of a bundle."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    path: RelPath
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0, le=1 << 40)


class Manifest(BaseModel):
    """The manifest.yaml of a bundle."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: Name
    version: ReleaseVersion
    built_at: datetime
    entrypoint: RelPath = "kamailio.cfg"
    files: tuple[FileEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_entry_per_file_and_a_listed_entrypoint(self) -> Manifest:
        seen: set[str] = set()
        for entry in self.files:
            if entry.path in seen:
                raise ValueError(f"files: {entry.path} is listed twice")
            if entry.path == MANIFEST:
                raise ValueError(f"files: {MANIFEST} cannot list itself")
            seen.add(entry.path)
        if self.entrypoint not in seen:
            raise ValueError(f"entrypoint: {self.entrypoint} is not one of the listed files")
        return self


class ReleaseSource(BaseModel):
    """The release.yaml of a release source directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: Name = "callserver"
    version: ReleaseVersion | None = None  # informative: the bundle takes --version
    entrypoint: RelPath = "kamailio.cfg"


class VerifyReport(BaseModel):
    """What `release verify` found."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bundle: str
    name: str
    version: str
    ok: bool
    files: int
    digest: str = Field(description="sha256 of manifest.yaml: names the whole verified content")
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    unsafe: tuple[str, ...] = Field(default=(), description="symlinks, FIFOs, devices, sockets")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a regular file, never through a symlink."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def _walk(root: Path) -> tuple[dict[str, Path], list[str]]:
    """(regular files by relative path, unsafe entries) of a tree, links never followed."""
    files: dict[str, Path] = {}
    unsafe: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            mode = path.lstat().st_mode
            rel = path.relative_to(root).as_posix()
            if stat.S_ISDIR(mode):
                continue
            if stat.S_ISREG(mode):
                files[rel] = path
            else:
                unsafe.append(rel)
        dirnames[:] = [d for d in dirnames if stat.S_ISDIR((base / d).lstat().st_mode)]
    return files, sorted(unsafe)


def _error_line(path: Path, exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(key_text(p) for p in err["loc"]) or "(top)"
    msg = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
    if err["type"] == "extra_forbidden":
        msg = "unknown key (typo?)"
    return f"{path}: {key}: {msg}"


def _source_meta(source: Path) -> ReleaseSource:
    meta_path = source / SOURCE_META
    if not meta_path.exists():
        return ReleaseSource()
    data: Any = load_yaml(meta_path, what="release source")
    try:
        return ReleaseSource.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise InvalidInput(_error_line(meta_path, exc)) from None


def build_bundle(*, source: Path, version: str, out_dir: Path) -> Path:
    """Copy `source` into `out_dir/<name>-<version>/` with a manifest; returns the bundle.

    Everything is validated before the first filesystem change; the bundle is assembled
    in a private directory inside `out_dir` and swapped in by rename."""
    if not source.is_dir():
        raise InvalidInput(f"{source}: not a release source directory")
    try:
        TypeAdapter(ReleaseVersion).validate_python(version)
    except ValidationError as exc:
        raise InvalidInput(f"--version {version!r}: {exc.errors()[0]['msg']}") from None
    meta = _source_meta(source)
    files, unsafe = _walk(source)
    if unsafe:
        raise InvalidInput(f"{source}: {unsafe[0]}: not a regular file (symlinks, FIFOs and devices are "
                           "refused: a bundle carries the files themselves)")
    if MANIFEST in files:
        raise InvalidInput(f"{source}: {MANIFEST}: reserved for the bundle's own manifest")
    if meta.entrypoint not in files:
        raise InvalidInput(f"{source}: entrypoint {meta.entrypoint} is missing")
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = out_dir / f"{meta.name}-{version}"
    staging = Path(tempfile.mkdtemp(prefix=f".{meta.name}-{version}.", dir=out_dir))
    try:
        entries = []
        for rel, src in sorted(files.items()):
            dest = staging / rel
            dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            shutil.copyfile(src, dest, follow_symlinks=False)
            dest.chmod(0o644)  # never the source's own modes (a 0600 secret must not become readable)
            entries.append(FileEntry(path=rel, sha256=sha256_of(dest), size=dest.stat().st_size))
        manifest = Manifest(name=meta.name, version=version, built_at=datetime.now(UTC),
                            entrypoint=meta.entrypoint, files=tuple(entries))
        (staging / MANIFEST).write_text(yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False))
        staging.chmod(0o755)
        _swap_in(staging, bundle)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return bundle


def _swap_in(staging: Path, bundle: Path) -> None:
    """Replace `bundle` by `staging` (both in one directory): the old one is moved aside,
    not deleted in place, so a crash leaves either the old or the new bundle whole."""
    if not bundle.is_symlink() and not bundle.exists():
        staging.rename(bundle)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.old.", dir=bundle.parent))
    old = aside / "bundle"
    bundle.rename(old)  # renames a symlink itself, never what it points at
    staging.rename(bundle)
    if old.is_symlink():
        old.unlink()
    shutil.rmtree(aside, ignore_errors=True)


def read_manifest(bundle: Path) -> Manifest:
    """Parse a bundle's manifest (InvalidInput naming the field when absent or malformed)."""
    path = bundle / MANIFEST
    if path.is_symlink():
        raise InvalidInput(f"{path}: a symlink: the manifest must be a regular file of the bundle")
    if not path.exists():
        raise InvalidInput(f"{bundle}: no {MANIFEST}: not a release bundle")
    data = load_yaml(path, what="manifest")
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: (top): expected a mapping, got {type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(_error_line(path, exc)) from None


def bundle_digest(bundle: Path) -> str:
    """sha256 of the manifest: with a verified bundle, it names every byte of the release."""
    return sha256_of(bundle / MANIFEST)


def verify_bundle(bundle: Path) -> VerifyReport:
    """Check the whole tree against the manifest; the report lists what differs."""
    manifest = read_manifest(bundle)
    expected = {f.path: f for f in manifest.files}
    present, unsafe = _walk(bundle)
    present.pop(MANIFEST, None)
    missing = tuple(sorted(set(expected) - set(present)))
    extra = tuple(sorted(set(present) - set(expected)))
    modified = tuple(sorted(p for p in expected.keys() & present.keys()
                            if present[p].stat().st_size != expected[p].size
                            or sha256_of(present[p]) != expected[p].sha256))
    return VerifyReport(bundle=str(bundle), name=manifest.name, version=manifest.version,
                        ok=not (missing or extra or modified or unsafe), files=len(expected),
                        digest=bundle_digest(bundle), missing=missing, extra=extra, modified=modified,
                        unsafe=tuple(unsafe))


def require_verified(bundle: Path) -> Manifest:
    """Verify a bundle or raise InvalidInput naming what is wrong."""
    report = verify_bundle(bundle)
    if not report.ok:
        parts = [f"{k} {', '.join(v)}" for k, v in
                 (("missing", report.missing), ("extra", report.extra), ("modified", report.modified),
                  ("unsafe (not a regular file)", report.unsafe)) if v]
        raise InvalidInput(f"{bundle}: release bundle fails verification: {'; '.join(parts)}")
    return read_manifest(bundle)


def require_unchanged(bundle: Path, digest: str | None) -> Manifest:
    """Verify a bundle and, when `digest` is given, require it to be that very content
    (the manifest's sha256 journalled when the run began); InvalidInput otherwise."""
    manifest = require_verified(bundle)
    got = bundle_digest(bundle)
    if digest is not None and got != digest:
        raise InvalidInput(f"{bundle}: the release bundle changed since the run's preflight (manifest sha256 "
                           f"{got[:16]}..., journalled {digest[:16]}...); nothing was switched")
    return manifest
