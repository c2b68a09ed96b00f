"""The shared, read-only Debian 12 base root every lab machine boots from.

Built once with debootstrap and cached in an image cache shared between labs
(default $CALLFLEET_IMAGE_CACHE or /var/tmp/callfleet-images: /var/tmp survives
reboots and is not the per-lab /tmp state). The cache key hashes the suite, the
package list and RECIPE_VERSION, so a change in any of them yields a new image
instead of silently reusing a stale one.

Concurrency: builders serialise on CACHE/<key>.lock (flock), build into a temp
dir inside the cache (same filesystem) and rename it into place, so a reader
either sees a complete image or none, and a killed build leaves only a temp dir
that the next build removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.lab.machines.errors import ImageBuildFailed
from orchestrator.lab.machines.host import require_host_tools, run

SUITE = "bookworm"
PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2", "sudo",
    "kamailio", "kamailio-extra-modules", "sip-tester", "procps",
)
# Bump when the post-processing below changes: it is part of the cache key.
RECIPE_VERSION = "3"
USER = "callfleet"
USER_UID = 1000
DEFAULT_CACHE = Path("/var/tmp/callfleet-images")
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
FALLBACK_MIRROR = "http://deb.debian.org/debian"

# Units that cost boot time or memory and have no use in a short-lived lab machine.
# Masked (not just disabled) so no dependency can pull them in.
MASKED_UNITS: tuple[str, ...] = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service", "apt-daily-upgrade.service",
    "dpkg-db-backup.timer", "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
    # --console=read-only: a getty there only fails and marks the system degraded.
    "console-getty.service", "getty@.service", "container-getty@.service",
    "systemd-timesyncd.service",
)
ENABLED_UNITS: tuple[str, ...] = ("systemd-networkd.service", "ssh.service", "kamailio.service")


class BaseImage(BaseModel):
    """A built base root in the cache."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    key: str
    suite: str
    packages: tuple[str, ...]
    mirror: str
    rootfs: Path
    build_seconds: float
    built_at: float

    @property
    def meta_path(self) -> Path:
        """image.json next to the rootfs."""
        return self.rootfs.parent / "image.json"


def default_cache_dir() -> Path:
    """$CALLFLEET_IMAGE_CACHE, else /var/tmp/callfleet-images."""
    env = os.environ.get("CALLFLEET_IMAGE_CACHE")
    return Path(env) if env else DEFAULT_CACHE


def debian_mirror(sources: Path = SOURCES) -> str:
    """The first URIs: of the main Debian suite in a deb822 sources file (the one apt uses here)."""
    try:
        text = sources.read_text()
    except FileNotFoundError:
        return FALLBACK_MIRROR
    for stanza in text.split("\n\n"):
        fields = dict(
            (k.strip(), v.strip()) for k, v in
            (line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#"))
        )
        if SUITE in fields.get("Suites", "").split() and "URIs" in fields:
            return fields["URIs"].split()[0]
    return FALLBACK_MIRROR


def image_key(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> str:
    """Cache key: hash of suite + sorted package list + recipe version."""
    blob = json.dumps({"suite": suite, "packages": sorted(packages), "recipe": RECIPE_VERSION})
    return f"debian-{suite}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def cached_image(cache_dir: Path | None = None, packages: tuple[str, ...] = PACKAGES,
                 suite: str = SUITE) -> BaseImage | None:
    """The cached image for this recipe, or None when not built yet."""
    meta = (cache_dir or default_cache_dir()) / image_key(packages, suite) / "image.json"
    try:
        return BaseImage.model_validate_json(meta.read_text())
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    """Exclusive flock on `path`, waiting at most `timeout` seconds (a build takes minutes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ImageBuildFailed(f"timed out waiting for the image lock {path}") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_image(cache_dir: Path | None = None, *, packages: tuple[str, ...] = PACKAGES, suite: str = SUITE,
                 mirror: str | None = None, timeout: float = 1800) -> BaseImage:
    """The cached base image, building it first when absent (idempotent, safe concurrently)."""
    cache = cache_dir or default_cache_dir()
    key = image_key(packages, suite)
    found = cached_image(cache, packages, suite)
    if found:
        return found
    require_host_tools({"debootstrap": "debootstrap", "systemctl": "systemd"})
    with _locked(cache / f"{key}.lock", timeout=timeout):
        found = cached_image(cache, packages, suite)  # another process may have built it meanwhile
        if found:
            return found
        for stale in cache.glob(f".build-{key}-*"):  # left by a killed build: we hold the lock
            _remove_tree(stale)
        return _build(cache, key, packages, suite, mirror or debian_mirror(), timeout)


def _build(cache: Path, key: str, packages: tuple[str, ...], suite: str, mirror: str, timeout: float) -> BaseImage:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache))
    try:
        rootfs = tmp / "rootfs"
        argv = ["debootstrap", "--variant=minbase", "--include=" + ",".join(packages), suite, str(rootfs), mirror]
        try:
            run(argv, timeout=timeout)
        except subprocess.CalledProcessError as exc:
            log = rootfs / "debootstrap" / "debootstrap.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else exc.stderr[-2000:]
            raise ImageBuildFailed(f"debootstrap failed (exit {exc.returncode})", hint=tail) from exc
        _post_process(rootfs)
        final = cache / key
        image = BaseImage(key=key, suite=suite, packages=tuple(packages), mirror=mirror, rootfs=final / "rootfs",
                          build_seconds=round(time.monotonic() - started, 1), built_at=time.time())
        (tmp / "image.json").write_text(image.model_dump_json(indent=2))
        tmp.chmod(0o755)  # mkdtemp makes 0700; nspawn does not care, but humans and `du` do
        os.rename(tmp, final)  # atomic on one filesystem: readers see all or nothing
        return image
    except BaseException:
        _remove_tree(tmp)
        raise


def _mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _remove_tree(path: Path) -> None:
    """rm -rf a build dir, unmounting first whatever debootstrap left mounted in it.

    A debootstrap killed half-way leaves proc/sys (and, in container mode, bind mounts
    of host device nodes) mounted in the target: deleting through them would touch
    the host, so they are unmounted (lazily, as a last resort) before anything is removed."""
    for point in _mounts_under(path):
        if run(["umount", str(point)], timeout=30, check=False).returncode != 0:
            run(["umount", "-l", str(point)], timeout=30, check=False)
    if _mounts_under(path):
        raise ImageBuildFailed(f"cannot unmount everything under {path}; not removing it")
    shutil.rmtree(path, ignore_errors=True)


def _chroot(rootfs: Path, *argv: str) -> None:
    try:
        run(["chroot", str(rootfs), *argv], timeout=120)
    except subprocess.CalledProcessError as exc:
        raise ImageBuildFailed(f"in image: {' '.join(argv)} failed: {exc.stderr.strip()}") from exc


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _post_process(rootfs: Path) -> None:
    """Make the debootstrapped tree a neutral base: nothing per-machine, a fast small boot."""
    # Per-machine identity goes into each machine's overlay: strip it from the base so
    # two machines can never share a host key or machine-id by accident.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/machine-id").write_text("")  # empty, not absent: systemd then treats the root as provisioned
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    if dbus_id.exists() and not dbus_id.is_symlink():
        dbus_id.unlink()
    with contextlib.suppress(FileNotFoundError):
        (rootfs / "etc/hostname").unlink()

    # The non-root user the orchestrator logs in as. '*' (not '!') as password: no
    # password login, but not "locked" either, so sshd never refuses key logins.
    _chroot(rootfs, "useradd", "--create-home", "--uid", str(USER_UID), "--user-group",
            "--shell", "/bin/bash", USER)
    _chroot(rootfs, "usermod", "--password", "*", USER)
    _write(rootfs / f"etc/sudoers.d/{USER}", f"{USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)

    # sshd: only the ed25519 host key the orchestrator writes, keys only, no root.
    _write(rootfs / "etc/ssh/sshd_config.d/callfleet.conf", (
        "# callfleet lab machine: the orchestrator writes the host key and the user's authorized key\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nUseDNS no\n"
        "MaxStartups 100:30:200\n"
    ))

    # Networking: networkd with the static .network file each overlay carries. Debian's
    # 80-container-host0.network (DHCP on host0) is masked: there is no DHCP server, and a
    # machine must never learn a default route from anywhere.
    _write(rootfs / "etc/systemd/network/.keep", "")
    with contextlib.suppress(FileExistsError):
        (rootfs / "etc/systemd/network/80-container-host0.network").symlink_to("/dev/null")
    # wait-online orders kamailio after the address exists (kamailio binds the addresses it
    # sees at start); bounded so a machine started with its link down still boots.
    _write(rootfs / "etc/systemd/system/systemd-networkd-wait-online.service.d/callfleet.conf", (
        "[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=15\n"
    ))
    # Volatile, small journal: memory per machine matters when a lab runs a dozen of them.
    _write(rootfs / "etc/systemd/journald.conf.d/callfleet.conf",
           "[Journal]\nStorage=volatile\nRuntimeMaxUse=8M\n")

    root = str(rootfs)
    run(["systemctl", f"--root={root}", "mask", *MASKED_UNITS], timeout=60, check=False)
    run(["systemctl", f"--root={root}", "enable", "systemd-networkd-wait-online.service"], timeout=60, check=False)
    try:
        run(["systemctl", f"--root={root}", "enable", *ENABLED_UNITS], timeout=60)
    except subprocess.CalledProcessError as exc:
        raise ImageBuildFailed(f"enabling {ENABLED_UNITS} failed: {exc.stderr.strip()}") from exc

    # Package caches are dead weight in a base every lab reads.
    for leftover in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        leftover.unlink()
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
