"""One cgroup per machine in each cgroup-v1 hierarchy we rely on (and the unified one).

Why: without a host systemd, `nspawn --keep-unit` puts every machine's payload in
<own cgroup>/payload, so two machines' systemds would share one cgroup tree and
stop each other's services. Each nspawn is therefore started inside its own
`callfleet.<machine>` group (created under the caller's own group, so limits that
apply to the caller still apply): the machine's systemd gets a private tree, the
freezer can stop exactly one machine, and the memory group measures it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from pydantic import BaseModel, ConfigDict

ROOT = Path("/sys/fs/cgroup")
# name=systemd and unified: a private tree for the machine's systemd; freezer: the
# freeze fault; memory: per-machine figures.
HIERARCHIES: tuple[str, ...] = ("systemd", "unified", "freezer", "memory")


class MachineCgroups(BaseModel):
    """The cgroup directories of one machine, by hierarchy (only those this host has)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    paths: dict[str, Path]

    @property
    def procs_files(self) -> list[Path]:
        """cgroup.procs of every group: where the launcher writes its own pid."""
        return [p / "cgroup.procs" for p in self.paths.values()]


def own_cgroup(hierarchy: str, proc_cgroup: str | None = None) -> str | None:
    """This process's path in `hierarchy` (v1 controller, "systemd" or "unified"), from /proc/self/cgroup."""
    text = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",")
        if (hierarchy == "unified" and controllers == "") or (hierarchy == "systemd" and "name=systemd" in names) \
                or hierarchy in names:
            return path
    return None


def machine_cgroups(machine: str) -> MachineCgroups:
    """Where `machine`'s groups go: callfleet.<machine> under our own group in each mounted hierarchy."""
    paths: dict[str, Path] = {}
    for hierarchy in HIERARCHIES:
        mount = ROOT / hierarchy
        own = own_cgroup(hierarchy)
        if own is None or not (mount / "cgroup.procs").exists():
            continue
        paths[hierarchy] = mount / own.lstrip("/") / f"callfleet.{machine}"
    return MachineCgroups(paths=paths)


def create(groups: MachineCgroups) -> None:
    """mkdir every group (idempotent)."""
    for path in groups.paths.values():
        path.mkdir(parents=True, exist_ok=True)


def pids(groups: MachineCgroups) -> set[int]:
    """Every process in the machine's groups, subgroups included (the machine's systemd makes many)."""
    found: set[int] = set()
    for top in groups.paths.values():
        if not top.exists():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                found.update(int(x) for x in procs.read_text().split())
    return found


def kill_all(groups: MachineCgroups) -> None:
    """SIGKILL every process of the machine (last resort of stop)."""
    thaw(groups)  # a frozen task does not die until thawed
    for pid in pids(groups):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def remove(groups: MachineCgroups) -> list[Path]:
    """rmdir every group, deepest first; returns those that could not go (still populated)."""
    left = []
    for top in groups.paths.values():
        if not top.exists():
            continue
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        try:
            top.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            left.append(top)
    return left


def _freezer_state(groups: MachineCgroups) -> Path | None:
    path = groups.paths.get("freezer")
    return path / "freezer.state" if path else None


def freeze(groups: MachineCgroups) -> bool:
    """Freeze every process of the machine; False when there is no freezer hierarchy."""
    state = _freezer_state(groups)
    if state is None or not state.exists():
        return False
    state.write_text("FROZEN\n")
    return True


def thaw(groups: MachineCgroups) -> bool:
    """Undo freeze(); False when there is no freezer hierarchy."""
    state = _freezer_state(groups)
    if state is None or not state.exists():
        return False
    state.write_text("THAWED\n")
    return True


def is_frozen(groups: MachineCgroups) -> bool:
    """True when the freezer reports FROZEN (or FREEZING: on its way)."""
    state = _freezer_state(groups)
    try:
        return state is not None and state.read_text().strip() in ("FROZEN", "FREEZING")
    except OSError:
        return False


def memory_bytes(groups: MachineCgroups) -> int | None:
    """The machine's memory use (rss + page cache charged to it), or None when unknown."""
    path = groups.paths.get("memory")
    try:
        return int((path / "memory.usage_in_bytes").read_text()) if path else None
    except (OSError, ValueError):
        return None


def memory_rss_bytes(groups: MachineCgroups) -> int | None:
    """Anonymous memory of the machine (total_rss + total_shmem from memory.stat), cache excluded."""
    path = groups.paths.get("memory")
    if not path:
        return None
    try:
        stat = dict(line.split() for line in (path / "memory.stat").read_text().splitlines())
        return int(stat.get("total_rss", 0)) + int(stat.get("total_shmem", 0))
    except (OSError, ValueError):
        return None
