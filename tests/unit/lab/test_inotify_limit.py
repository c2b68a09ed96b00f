"""The kernel's inotify instance limit is raised for a large lab, never lowered (on a file
standing in for /proc/sys/fs/inotify/max_user_instances)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.lab.machines.errors import HostToolsMissing
from orchestrator.lab.machines.host import ensure_inotify_instances, inotify_instances_needed


def test_a_98_machine_lab_raises_debians_default(tmp_path: Path) -> None:
    knob = tmp_path / "max_user_instances"
    knob.write_text("128\n")
    raised = ensure_inotify_instances(98, knob=knob)
    assert raised == inotify_instances_needed(98) == int(knob.read_text())
    assert raised > 98 * 4  # systemd, journald and logind of each machine, with room to spare


def test_a_higher_limit_is_kept(tmp_path: Path) -> None:
    knob = tmp_path / "max_user_instances"
    knob.write_text("100000\n")
    assert ensure_inotify_instances(98, knob=knob) is None
    assert knob.read_text() == "100000\n"


def test_an_unwritable_limit_names_the_sysctl(tmp_path: Path) -> None:
    with pytest.raises(HostToolsMissing, match="cannot raise") as info:
        ensure_inotify_instances(14, knob=tmp_path / "absent" / "max_user_instances")
    assert info.value.hint == f"as root: sysctl -w fs.inotify.max_user_instances={inotify_instances_needed(14)}"
