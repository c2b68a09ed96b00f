"""Rewrite README.md's Results section from benchmarks/results/*.md.

Only the text between `<!-- results:start -->` and `<!-- results:end -->` changes; when the
markers are missing, a "Results" section holding them is appended to the README first.
Run by `make bench` after the benchmarks; `--check` exits 1 when the README is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, RESULTS

README = REPO / "README.md"
START = "<!-- results:start -->"
END = "<!-- results:end -->"
ORDER = ["blast_radius", "overhead", "overhead_before_16", "scale", "scale_before_16", "gate_faults",
         "alert_latency"]  # the others follow, by name
SECTION = f"""
## Results

`make bench` runs the benchmarks on their own labs (198.18.92 to 198.18.98, each
taken down at the end) and writes each result as JSON and as a Markdown table, with the
machine, date and parameters, under `benchmarks/results/`: `blast_radius.py` (one faulty
release rolled out three ways), `overhead.py` (each wave of a gated rollout split and set
against the ideal wave its policy allows), `scale.py` (wave time by hosts per site, CPU and
memory by estate shape),
`gate_faults.py` (calls and seconds the gate needs per fault class), `alert_latency.py`
(from a failed gate's verdict to the last alert delivered on webhook, e-mail and SMS) and
`guard_good_rollouts.py` (ten good six-site rollouts in a row with the fleet guard on: its false
triggers). The tables below are copied from those files by `benchmarks/readme_results.py`. The
incident replays (2021 Orange, Optus 2025, AT&T 2024, Intrado 2014) are tests: `tests/scenarios/`.

{START}
{END}
"""


def generated() -> str:
    files = sorted(RESULTS.glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER),
                                                         p.stem))
    parts = []
    for path in files:
        lines = path.read_text().strip().splitlines()
        # the result files' own "# Title" becomes a level-3 heading under "## Results"
        lines = [f"##{ln}" if ln.startswith("# ") else ln for ln in lines]
        parts.append("\n".join(lines) + f"\n\n(`benchmarks/results/{path.name}`, JSON beside it)")
    return "\n\n".join(parts) if parts else "No results yet: run `make bench`."


def rewrite(text: str) -> str:
    if START not in text or END not in text:
        text = text.rstrip("\n") + "\n" + SECTION
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{generated()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = README.read_text()
    new = rewrite(text)
    if "--check" in argv:
        return 0 if new == text else 1
    if new != text:
        README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
