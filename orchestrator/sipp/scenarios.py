"""Run SIPp: PSAP simulators (UAS) and emergency callers (UAC), and read their results.

SIPp's files are parsed by header name (its CSV columns move between versions); the
per-call failure codes come from the caller scenario's own log lines.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator import procs
from orchestrator.errors import RemoteError

PSAP_SCENARIO = "psap_uas.xml"
CALLER_SCENARIO = "caller_uac.xml"
# SIPp exit codes: 0 all calls ok, 1 some failed, 97 global timeout, 99 no call processed.
EXIT_OK, EXIT_SOME_FAILED = 0, 1


def scenario(name: str) -> Path:
    """Path of a packaged scenario file."""
    return Path(str(files("orchestrator.sipp") / name))


def sipp_binary() -> str:
    """The sipp binary (ToolMissing when absent)."""
    return procs.require_binary("sipp", package="sip-tester")


_REJECT = """  <nop next="end"/>
  <label id="reject"/>
  <send>
    <![CDATA[
      SIP/2.0 503 Service Unavailable
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]psap[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <label id="end"/>
"""


def noisy_psap_scenario(*, failure: float, delay_ms: int) -> str:
    """The PSAP scenario with background noise, as on a real network: a fraction `failure`
    of calls rejected at random with 503 (SIPp's `chance` branch), and a uniform 0..delay_ms
    pause before answering. failure=0 and delay_ms=0 give the stock scenario's behaviour."""
    if not 0 <= failure < 1:
        raise ValueError(f"background failure {failure} is not in [0, 1)")
    if delay_ms < 0:
        raise ValueError(f"background delay {delay_ms} ms is negative")
    text = scenario(PSAP_SCENARIO).read_text()
    head = '  <recv request="INVITE" crlf="true"/>\n'
    tail = '  <!-- Keep the call a while to absorb a retransmitted BYE. -->\n'
    assert head in text and tail in text, "psap_uas.xml changed: update noisy_psap_scenario"
    noise = ""
    if failure > 0:
        noise += f'  <nop next="reject" chance="{failure:.6f}"/>\n'
    if delay_ms > 0:
        noise += f'  <pause distribution="uniform" min="0" max="{int(delay_ms)}"/>\n'
    text = text.replace(head, head + noise, 1)
    if failure > 0:
        text = text.replace(tail, _REJECT + tail, 1)
    return text


def start_psap(*, address: str, workdir: Path, log: Path, port: int = 5060, wrap: Sequence[str] = (),
               bound: Callable[[], bool] | None = None, scenario_file: Path | None = None) -> int:
    """Start a PSAP simulator answering every call on address:port; returns its pid.

    `wrap`: an argv prefix that execs SIPp elsewhere (e.g. nsenter into a lab machine's
    network namespace); `bound` then says whether it listens (this process cannot see it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    # SIPp's control port on loopback: inside `wrap` that is the namespace's own loopback
    control = procs.free_udp_port("127.0.0.1") if not wrap else port + 1000
    argv = [*wrap, sipp_binary(), "-sf", str(scenario_file or scenario(PSAP_SCENARIO)), "-i", address, "-p", str(port),
            "-bind_local", "-nostdin", "-cp", str(control), "-max_socket", "2048"]
    pid = procs.spawn(argv, log=log, cwd=workdir)
    listening = bound or (lambda: _udp_bound(address, port))
    if not procs.wait_for(lambda: listening() or not procs.alive(pid), timeout=5.0) or not procs.alive(pid):
        raise RemoteError(f"PSAP simulator on {address}:{port} did not start: {procs.tail(log)}")
    return pid


def _udp_bound(address: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


class CallStats(BaseModel):
    """What one caller run observed (cumulative)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    attempted: int
    answered: int
    failed: int
    in_flight: int = 0
    failures: dict[str, int] = {}
    srd_ms: tuple[float, ...] = ()
    retransmissions: int = 0


def caller_argv(*, local_address: str, target: str, numbers_file: Path, calls: int, rate: float,
                hold_ms: int, time_limit_s: int, recv_timeout_ms: int = 6000) -> list[str]:
    """The sipp command line of an emergency caller."""
    rate_per_period, period_ms = (round(rate), 1000) if rate >= 1 else (1, round(1000 / rate))
    return [sipp_binary(), "-sf", str(scenario(CALLER_SCENARIO)), "-inf", str(numbers_file),
            "-i", local_address, "-p", str(procs.free_udp_port(local_address)), "-bind_local",
            "-nostdin", "-cp", str(procs.free_udp_port("127.0.0.1")),
            "-m", str(calls), "-r", str(rate_per_period), "-rp", str(period_ms),
            "-d", str(hold_ms), "-recv_timeout", str(recv_timeout_ms), "-max_retrans", "4",
            "-timeout", f"{time_limit_s}s", "-timeout_error",
            "-trace_stat", "-fd", "1", "-trace_rtt", "-rtt_freq", "1", "-trace_logs",
            "-max_socket", "2048", target]


PROBE_CALLER = "callfleet-probe"


def write_numbers(path: Path, numbers: Sequence[str], callers: Sequence[str] = (PROBE_CALLER,)) -> Path:
    """SIPp injection file dialling `numbers` in turn, each caller in turn calling each number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("SEQUENTIAL\n" + "".join(f"{n};{c};\n" for c in callers for n in numbers))
    return path


def run_caller(*, local_address: str, target: str, number: str, calls: int, rate: float,
               workdir: Path, hold_ms: int = 100) -> CallStats:
    """Place `calls` calls to `number` via `target` and wait for them; RemoteError if SIPp breaks."""
    workdir.mkdir(parents=True, exist_ok=True)
    numbers = write_numbers(workdir / "numbers.csv", [number])
    limit = int(calls / rate) + 30
    argv = caller_argv(local_address=local_address, target=target, numbers_file=numbers, calls=calls,
                       rate=rate, hold_ms=hold_ms, time_limit_s=limit)
    for attempt in range(3):
        try:
            proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=limit + 15)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"sipp to {target} ran past its {limit}s bound") from None
        # another process took the port between our check and SIPp's bind: new ports, again
        if "Unable to bind" not in proc.stdout + proc.stderr or attempt == 2:
            break
        argv = caller_argv(local_address=local_address, target=target, numbers_file=numbers, calls=calls,
                           rate=rate, hold_ms=hold_ms, time_limit_s=limit)
    if proc.returncode not in (EXIT_OK, EXIT_SOME_FAILED):
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RemoteError(f"sipp to {target} failed (exit {proc.returncode}): {' '.join(detail)}")
    stats = read_stats(workdir)
    if stats is None:
        raise RemoteError(f"sipp to {target} wrote no statistics (exit {proc.returncode})")
    return stats


def _find(workdir: Path, suffix: str) -> Path | None:
    found = sorted(workdir.glob(f"caller_uac_*{suffix}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def read_stats(workdir: Path) -> CallStats | None:
    """Cumulative statistics of the latest caller run in `workdir`, or None if absent."""
    stat_file = _find(workdir, "_.csv")
    if stat_file is None:
        return None
    with stat_file.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    if not rows:
        return None
    last = rows[-1]

    def col(name: str) -> int:
        value = last.get(name) or "0"
        return int(value) if value.isdigit() else 0

    failures: Counter[str] = Counter()
    log = _find(workdir, "_logs.log")
    if log is not None:
        for line in log.read_text(errors="replace").splitlines():
            parts = line.split(";")
            if len(parts) >= 3 and parts[0].endswith("FAILED"):
                failures[parts[2].removeprefix("SIP/2.0 ").strip() or "unknown"] += 1
    failed = col("FailedCall(C)")
    coded = sum(failures.values())
    if failed > coded:
        failures["timeout"] += failed - coded
    srd: list[float] = []
    rtt = _find(workdir, "_rtt.csv")
    if rtt is not None:
        with rtt.open(newline="") as f:
            for row in csv.DictReader(f, delimiter=";"):
                try:
                    srd.append(float(row["response_time_ms"]))
                except (KeyError, ValueError):
                    continue
    return CallStats(attempted=col("TotalCallCreated"), answered=col("SuccessfulCall(C)"),
                     failed=failed, in_flight=col("CurrentCall"), failures=dict(failures),
                     srd_ms=tuple(srd), retransmissions=col("Retransmissions(C)"))


def soft_stop(pid: int, *, timeout: float = 15.0) -> None:
    """Ask a caller to stop placing calls and let calls in progress finish (SIGUSR1)."""
    if procs.alive(pid, expect="sipp"):
        os.kill(pid, signal.SIGUSR1)
        if procs.wait_for(lambda: not procs.alive(pid), timeout=timeout):
            return
    procs.stop_pid(pid, expect="sipp")
