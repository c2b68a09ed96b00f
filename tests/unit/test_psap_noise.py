"""Background noise at the PSAPs (`lab up --background-failure P --background-delay-ms D`):
the scenario SIPp really runs rejects about P of the calls at random and answers the rest.
Real SIPp on loopback (127.0.0.1), bounded in calls and time."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator import procs
from orchestrator.sipp import scenarios


def test_no_noise_is_the_stock_scenario_and_bad_values_are_refused() -> None:
    stock = scenarios.scenario(scenarios.PSAP_SCENARIO).read_text()
    assert scenarios.noisy_psap_scenario(failure=0, delay_ms=0) == stock
    noisy = scenarios.noisy_psap_scenario(failure=0.003, delay_ms=20)
    assert 'chance="0.003000"' in noisy and 'max="20"' in noisy and "503 Service Unavailable" in noisy
    for failure, delay in ((1.0, 0), (-0.1, 0), (0.1, -1)):
        with pytest.raises(ValueError):
            scenarios.noisy_psap_scenario(failure=failure, delay_ms=delay)


def _uac(port: int, calls: int, work: Path) -> tuple[int, int]:
    """SIPp's built-in UAC: `calls` calls at 100/s to 127.0.0.1:port; (successful, failed)."""
    out = subprocess.run([scenarios.sipp_binary(), "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1",
                          "-p", str(procs.free_udp_port("127.0.0.1")), "-m", str(calls), "-r", "100", "-d", "50",
                          "-nostdin", "-timeout", "30s", "-recv_timeout", "3000"],
                         capture_output=True, text=True, timeout=60, cwd=work, check=False).stdout
    counts = {}
    for line in out.splitlines():
        for label in ("Successful call", "Failed call"):
            if line.strip().startswith(label):
                counts[label] = int(line.split("|")[2].strip())
    return counts["Successful call"], counts["Failed call"]


@pytest.mark.parametrize(("failure", "low", "high"), [(0.0, 0, 0), (0.3, 0.17, 0.43)])
def test_the_psap_rejects_about_the_configured_fraction(tmp_path: Path, failure: float, low: float,
                                                        high: float) -> None:
    scenario = tmp_path / "psap.xml"
    scenario.write_text(scenarios.noisy_psap_scenario(failure=failure, delay_ms=10))
    port = procs.free_udp_port("127.0.0.1")
    pid = scenarios.start_psap(address="127.0.0.1", port=port, workdir=tmp_path / "psap", log=tmp_path / "psap.log",
                               scenario_file=scenario)
    try:
        ok, failed = _uac(port, 200, tmp_path)
    finally:
        procs.stop_pid(pid, expect="sipp")
    assert ok + failed == 200
    # binomial(200, p): +-4 standard deviations, so a correct scenario fails this about once in 15,000 runs
    assert low <= failed / 200 <= high, (ok, failed)
