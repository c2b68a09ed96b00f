"""`lab up` refuses a shape its single sshd cannot serve, before starting anything."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import cli


def test_more_hosts_than_one_sshd_can_listen_for_is_refused_up_front(tmp_path: Path) -> None:
    state = tmp_path / "lab"
    proc = cli("lab", "up", "--state-dir", str(state), "--base", "127.61", "--sites", "6", "--hosts-per-site", "4")
    assert proc.returncode == 2
    assert "24 hosts" in proc.stderr and "at most 16" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not state.exists()  # nothing half-made
