"""Release packages: a verified bundle as a Debian package in a flat APT repository.

`callserver_release_source: package` installs releases with apt instead of copying
bundles from the controller. Each release is its own package, so several versions
install side by side (rollback stays a switch of `current`, never a reinstall):

  package name  `<name>-release-<version>`, escaped into Debian's package-name alphabet
                ([a-z0-9+.-]) by `package_name`: `+` -> `++`, `_` -> `+-`, an upper-case
                letter -> `+` and the letter in lower case (5.6.0-lab1 stays 5.6.0-lab1,
                5.6.0-RC1 becomes 5.6.0-+r+c1). Injective: two releases never share a
                package, which would make installing one remove the other.
  Version       the release version when Debian accepts it as one, else `0~` and the
                version with `-` and `_` turned into `.` (informative only: the name
                already identifies the release).
  contents      the bundle's files and its manifest.yaml under `<root>/releases/<version>/`
                (root: the role's `callserver_root`, /opt/callserver), root-owned, 0644/0755.

The repository is flat (`deb [trusted=yes] URL ./`): the .deb files, `Packages`,
`Packages.gz` and an unsigned `Release`, all rewritten atomically under a lock; nothing
outside the repository directory is written or deleted. The role's side:
playbooks/roles/callserver/tasks/install.yml; docs/RELEASES.md, "Package releases".
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestrator.errors import CallfleetError, InvalidInput
from orchestrator.estate.model import Name, ReleaseVersion
from orchestrator.procs import require_binary
from orchestrator.release.bundle import MANIFEST, Manifest, bundle_digest, require_verified, sha256_of

DEFAULT_ROOT = "/opt/callserver"
ARCH = "all"
MAINTAINER = "callfleet <callfleet@localhost.invalid>"
LOCK = ".callfleet-repo.lock"
PACKAGE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# Debian policy 5.6.12: an upstream part starting with a digit, a revision after the last
# hyphen; no epoch (a colon would not survive the file name).
DEB_VERSION_RE = re.compile(r"^[0-9][A-Za-z0-9.+~]*$|^[0-9][A-Za-z0-9.+~-]*-[A-Za-z0-9.+~]+$")
ROOT_RE = re.compile(r"^(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+$")
FILE_FIELDS = ("Filename", "Size", "MD5sum", "SHA1", "SHA256")
# Fields dpkg-scanpackages writes after the file fields (its canonical order).
TAIL_FIELDS = ("Section", "Priority", "Description")


class PackageResult(BaseModel):
    """What `release package` built and where it went."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    release: str
    package: str
    version: str
    deb: str
    sha256: str
    install_dir: str
    files: int
    digest: str
    repo: str
    indexed: int


class BuiltDeb(BaseModel):
    """One release package written by `build_deb`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    deb: Path
    package: str
    files: int
    digest: str = Field(description="sha256 of the packaged manifest.yaml (the bundle's digest)")


def _check_version(version: str) -> str:
    try:
        return TypeAdapter(ReleaseVersion).validate_python(version)
    except ValidationError as exc:
        raise InvalidInput(f"release version {version!r}: {exc.errors()[0]['msg']}") from None


def _escape(text: str) -> str:
    """Map [A-Za-z0-9._+-] into Debian's [a-z0-9.+-], injectively (`+` is the escape)."""
    out = []
    for ch in text:
        if ch == "+":
            out.append("++")
        elif ch == "_":
            out.append("+-")
        elif "A" <= ch <= "Z":
            out.append("+" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def package_name(name: str, version: str) -> str:
    """The Debian package of release `version` of `name` (see the module doc)."""
    try:
        TypeAdapter(Name).validate_python(name)
    except ValidationError as exc:
        raise InvalidInput(f"release name {name!r}: {exc.errors()[0]['msg']}") from None
    result = _escape(f"{name}-release-{_check_version(version)}")
    if not PACKAGE_NAME_RE.match(result):  # cannot happen for a valid name and version: a guard, not a rule
        raise InvalidInput(f"release {name} {version}: {result!r} is not a Debian package name")
    return result


def deb_version(version: str) -> str:
    """The Debian `Version` of release `version` (see the module doc)."""
    version = _check_version(version)
    if DEB_VERSION_RE.match(version):
        return version
    return "0~" + re.sub(r"[-_]", ".", version)


def check_root(root: str) -> PurePosixPath:
    """The call-server root on the hosts: absolute, normalised, no `.` or `..` part."""
    if not ROOT_RE.match(root) or any(part in (".", "..") for part in PurePosixPath(root).parts):
        raise InvalidInput(f"--root {root!r}: not a plain absolute path such as {DEFAULT_ROOT}")
    return PurePosixPath(root)


def _require_repo_dir(repo: Path) -> None:
    if repo.exists() and not repo.is_dir():
        raise InvalidInput(f"{repo}: not a directory (the APT repository is a directory)")
    repo.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _repo_lock(repo: Path) -> Iterator[None]:
    """One writer at a time: two `release package` runs must not interleave index writes."""
    fd = os.open(repo / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write beside `path` and rename over it: a reader sees the old or the new file, whole."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mkdirs(base: Path, rel: PurePosixPath) -> Path:
    """Create base/rel one level at a time, each 0755 whatever the umask (dpkg installs these modes)."""
    path = base
    for part in rel.parts:
        path = path / part
        path.mkdir(exist_ok=True)
        path.chmod(0o755)
    return path


def _stage_release(bundle: Path, manifest: Manifest, dest: Path) -> int:
    """Copy the manifest's files (never through a link) and the manifest into `dest`; 0644 each."""
    rels = [PurePosixPath(f.path) for f in manifest.files] + [PurePosixPath(MANIFEST)]
    for rel in rels:
        target = _mkdirs(dest, rel.parent) / rel.name
        shutil.copyfile(bundle / rel, target, follow_symlinks=False)
        target.chmod(0o644)
    # What goes into the package is this copy: verify it, not only the bundle it came from.
    require_verified(dest)
    return len(manifest.files)


def _installed_kib(tree: Path) -> int:
    return max(1, sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) // 1024)


def _control(manifest: Manifest, *, package: str, digest: str, install_dir: PurePosixPath, kib: int) -> str:
    return (f"Package: {package}\nVersion: {deb_version(manifest.version)}\nArchitecture: {ARCH}\n"
            f"Maintainer: {MAINTAINER}\nInstalled-Size: {kib}\nSection: misc\nPriority: optional\n"
            f"Description: {manifest.name} release {manifest.version}\n"
            f" The verified release bundle {manifest.name} {manifest.version}, installed under\n"
            f" {install_dir}.\n Manifest sha256: {digest}\n")


def _dpkg_deb(*args: str, env: dict[str, str] | None = None) -> str:
    dpkg_deb = require_binary("dpkg-deb", package="dpkg")
    proc = subprocess.run([dpkg_deb, *args], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "LC_ALL": "C.UTF-8", **(env or {})})
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise CallfleetError(f"dpkg-deb {args[0]} failed: {detail}")
    return proc.stdout


def build_deb(bundle: Path, out_dir: Path, *, root: str = DEFAULT_ROOT) -> BuiltDeb:
    """Build the release package of a verified bundle into `out_dir`.

    The package tree is assembled in a private directory inside `out_dir` (removed after),
    the .deb renamed into place, so a crash never leaves a half-written package there."""
    root_path = check_root(root)
    manifest = require_verified(bundle)
    package = package_name(manifest.name, manifest.version)
    install_dir = root_path / "releases" / manifest.version
    deb = out_dir / f"{package}_{deb_version(manifest.version)}_{ARCH}.deb"
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    try:
        tree = _mkdirs(staging, PurePosixPath("tree"))
        release_dir = _mkdirs(tree, install_dir.relative_to("/"))
        files = _stage_release(bundle, manifest, release_dir)
        digest = bundle_digest(release_dir)  # of the verified copy: what the hosts will check
        control = _mkdirs(tree, PurePosixPath("DEBIAN")) / "control"
        control.write_text(_control(manifest, package=package, digest=digest, install_dir=install_dir,
                                    kib=_installed_kib(tree)))
        control.chmod(0o644)
        built = staging / deb.name
        # The build time of the release, not of the package: the same bundle gives the same bytes.
        epoch = str(int(manifest.built_at.timestamp()))
        _dpkg_deb("--build", "--root-owner-group", str(tree), str(built), env={"SOURCE_DATE_EPOCH": epoch})
        built.chmod(0o644)
        os.replace(built, deb)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuiltDeb(deb=deb, package=package, files=files, digest=digest)


def _fields(control: str) -> list[tuple[str, str]]:
    """A control paragraph as (field, value) pairs, continuation lines kept in the value."""
    fields: list[tuple[str, str]] = []
    for line in control.splitlines():
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value}\n{line}")
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name, value.strip()))
    return fields


def _stanza(deb: Path) -> str:
    """The Packages entry of one .deb: its control fields plus where and what the file is."""
    fields = [(k, v) for k, v in _fields(_dpkg_deb("--field", str(deb))) if k not in FILE_FIELDS]
    digests = {algo: hashlib.new(algo) for algo in ("md5", "sha1", "sha256")}
    with deb.open("rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            for h in digests.values():
                h.update(chunk)
    file_fields = [("Filename", f"./{deb.name}"), ("Size", str(deb.stat().st_size)),
                   ("MD5sum", digests["md5"].hexdigest()), ("SHA1", digests["sha1"].hexdigest()),
                   ("SHA256", digests["sha256"].hexdigest())]
    # dpkg-scanpackages' order (apt does not mind; people comparing the two indexes do).
    ordered = ([f for f in fields if f[0] not in TAIL_FIELDS] + file_fields
               + sorted((f for f in fields if f[0] in TAIL_FIELDS), key=lambda f: TAIL_FIELDS.index(f[0])))
    return "".join(f"{k}: {v}\n" for k, v in ordered)


def write_index(repo: Path) -> int:
    """Rewrite Packages, Packages.gz and Release from every .deb in `repo`; returns how many.

    Symlinked .deb files are left out: the index only vouches for files the repository holds."""
    debs = sorted(p for p in repo.glob("*.deb") if p.is_file() and not p.is_symlink())
    packages = "".join(_stanza(deb) + "\n" for deb in debs).encode()
    packages_gz = gzip.compress(packages, mtime=0)  # no time stamp: same index, same bytes
    sums = "".join(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}\n"
                   for name, data in (("Packages", packages), ("Packages.gz", packages_gz)))
    release = (f"Origin: callfleet\nLabel: call-server releases\nArchitectures: {ARCH}\n"
               f"Date: {format_datetime(datetime.now(UTC), usegmt=True)}\nSHA256:\n{sums}")
    # Packages before Release: a client that reads the new Release finds the files it names.
    _write_atomic(repo / "Packages.gz", packages_gz)
    _write_atomic(repo / "Packages", packages)
    _write_atomic(repo / "Release", release.encode())
    return len(debs)


def package_release(bundle: Path, repo: Path, *, root: str = DEFAULT_ROOT) -> PackageResult:
    """Package a verified bundle and add it to the flat APT repository `repo` (created if absent).

    Refused (InvalidInput, nothing written): a bundle that fails verification, a version or
    root that does not map, a repository path that is not a directory."""
    root_path = check_root(root)
    manifest = require_verified(bundle)
    _require_repo_dir(repo)
    with _repo_lock(repo):
        built = build_deb(bundle, repo, root=root)
        indexed = write_index(repo)
    return PackageResult(release=manifest.version, package=built.package, version=deb_version(manifest.version),
                         deb=str(built.deb), sha256=sha256_of(built.deb),
                         install_dir=str(root_path / "releases" / manifest.version), files=built.files,
                         digest=built.digest, repo=str(repo), indexed=indexed)
