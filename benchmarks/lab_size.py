"""Lab size: how long `lab up` takes and how much memory the machine lab uses, by shape.

For each shape (sites x hosts per site) a lab is brought up on 198.18.93 in a temporary
state directory (the Debian image already cached: `make install` or any earlier lab built
it), measured, and taken down. Measured per shape:

  - machines: call servers + the edge + the services machine;
  - up s: wall time of `callfleet lab up` (boot every machine in parallel, configure the
    edge, install the stock release on every call server with the operator's playbook,
    start the PSAPs and Prometheus);
  - machines MiB: the sum of the machines' memory cgroups as `lab status` reports them;
  - per machine MiB: that sum over the number of machines;
  - used MiB delta: the computer's used memory (`free`, MemTotal - MemAvailable) after
    minus before, everything included (host processes, page cache pinned by the overlays);
  - down s: wall time of `callfleet lab down`.

Usage: python benchmarks/lab_size.py [SITESxHOSTS ...]   (default 6x2 12x8)
Figures to benchmarks/results/lab_size.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import callfleet, write

BASE = "198.18.93"
SHAPES = [(6, 2), (12, 8)]


def _used_mib() -> float:
    info = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()}
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def measure(sites: int, hosts: int) -> dict[str, Any]:
    """Bring one shape up, measure it, take it down."""
    with tempfile.TemporaryDirectory(prefix="cflabsize-") as tmp:
        state = str(Path(tmp) / "lab")
        before = _used_mib()
        t0 = time.monotonic()
        up = callfleet("lab", "up", "--sites", str(sites), "--hosts-per-site", str(hosts), "--base", BASE,
                       "--state-dir", state, "--json", timeout=3600)
        up_s = time.monotonic() - t0
        try:
            if up.returncode != 0:
                raise RuntimeError(f"lab up {sites}x{hosts} failed: {up.stderr.strip()[-2000:]}")
            time.sleep(5)  # let the machines settle (journald, first scrapes) before reading memory
            status = json.loads(callfleet("lab", "status", "--state-dir", state, "--json").stdout)
            machines = [c for c in status["components"] if c["kind"] in ("callserver", "edge", "services")]
            running = [c for c in machines if c["status"] == "running" and (c["service"] in (None, "active"))]
            used = _used_mib() - before
            total = sum(c["memory_mb"] or 0 for c in machines)
        finally:
            t1 = time.monotonic()
            callfleet("lab", "down", "--state-dir", state, timeout=1800)
            down_s = time.monotonic() - t1
    return {"shape": f"{sites}x{hosts}", "machines": len(machines), "running": len(running),
            "up s": round(up_s, 1), "machines MiB": round(total), "per machine MiB": round(total / len(machines), 1),
            "used MiB delta": round(used), "down s": round(down_s, 1)}


def main(argv: list[str]) -> int:
    shapes = [tuple(int(x) for x in a.split("x")) for a in argv] or SHAPES
    rows = []
    for sites, hosts in shapes:
        row = measure(sites, hosts)
        print(row, flush=True)
        rows.append(row)
    write("lab_size", params={"base": BASE, "shapes": [f"{s}x{h}" for s, h in shapes]}, rows=rows,
          columns=["shape", "machines", "running", "up s", "machines MiB", "per machine MiB", "used MiB delta",
                   "down s"],
          title="Lab size: `lab up` time and memory of the machine lab",
          notes="*machines MiB*: the machines' memory cgroups (lab status); *used MiB delta*: the computer's "
                "MemTotal - MemAvailable after `lab up` minus before. The image was cached.")
    return 0 if all(r["running"] == r["machines"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
