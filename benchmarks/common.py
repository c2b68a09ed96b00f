"""Shared benchmark plumbing: run callfleet, describe the machine, write JSON + Markdown."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def callfleet(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run `python -m orchestrator ARGS`, capturing output."""
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False, env={**os.environ, "LC_ALL": "C.UTF-8"})


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    kamailio = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "kernel": platform.release(), "kamailio": kamailio.strip()}


def write(name: str, *, params: dict[str, Any], rows: list[dict[str, Any]], columns: list[str], title: str,
          notes: str = "") -> tuple[Path, Path]:
    """benchmarks/results/<name>.json and .md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"benchmark": name, "machine": machine(), "params": params, "rows": rows}
    jpath = RESULTS / f"{name}.json"
    jpath.write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# {title}", "", f"Measured {doc['machine']['date']} on {doc['machine']['host']} "
             f"({doc['machine']['cpus']} CPUs, {doc['machine']['kamailio']}, Python {doc['machine']['python']}).", "",
             "Parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()), "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    if notes:
        lines += ["", notes]
    mpath = RESULTS / f"{name}.md"
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath
