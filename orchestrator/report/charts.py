"""The report's charts as inline SVG strings (matplotlib's SVG backend, text kept as text so
the page stays searchable and small). One function per chart; no pyplot, no global state."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from orchestrator.report.model import PhaseSpan, RolloutReport, StageReport
from orchestrator.rollout.machine import TERMINAL, Phase

# One colour per kind of activity; the legend names them.
PHASE_COLOURS: dict[Phase, str] = {
    Phase.PENDING: "#bbbbbb", Phase.PREFLIGHT: "#bbbbbb", Phase.AWAITING_APPROVAL: "#9467bd",
    Phase.WAITING_FLEET_BAKE: "#c5b0d5", Phase.PREPARING: "#aec7e8", Phase.DRAINING: "#7f7f7f",
    Phase.SWITCHING: "#1f77b4", Phase.POSTCHECKING: "#17becf", Phase.GATING: "#ff7f0e",
    Phase.STEPPING: "#2ca02c", Phase.BAKING: "#98df8a", Phase.WAVE_DONE: "#2ca02c",
    Phase.ROLLING_BACK: "#d62728", Phase.FLEET_ROLLING_BACK: "#ff9896", Phase.HALTED: "#d62728",
    Phase.COMPLETED: "#2ca02c", Phase.ABORTED: "#8c564b",
}
CANARY, BASELINE = "#d62728", "#1f77b4"


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    # real <text>: the DOM can be searched and the page stays small; a fixed salt gives stable
    # ids, so the same journal gives the same page
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "callfleet"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inline: no XML prolog or doctype


def _end(span: PhaseSpan, last: float) -> float:
    return span.end if span.end is not None else last


def timeline(report: RolloutReport) -> str:
    """Waves (rows) coloured by phase over time, and each site's live traffic weight below."""
    spans = [p for p in report.phases if p.wave > 0 and p.phase not in TERMINAL]
    t0 = report.run.created
    last = max([report.run.updated, *(p.start for p in report.phases)])
    fig = Figure(figsize=(10, 2.2 + 0.35 * len(report.waves)))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [max(2, len(report.waves)), 2]})
    for p in spans:
        top.barh(p.wave, _end(p, last) - p.start, left=p.start - t0, height=0.6, color=PHASE_COLOURS[p.phase])
    for r in report.rollbacks:
        top.axvline(r.started - t0, color=CANARY, linestyle="--", linewidth=1)
        top.annotate(f"rollback {r.site}", (r.started - t0, r.wave), xytext=(4, 10), textcoords="offset points",
                     color=CANARY, fontsize=8)
    top.set_yticks([w.index for w in report.waves], [f"{w.index} {w.site}" for w in report.waves])
    top.invert_yaxis()
    top.set_title("waves and phases")
    used = sorted({p.phase for p in spans}, key=list(Phase).index)
    handles = [Patch(color=PHASE_COLOURS[p], label=str(p)) for p in used]
    if handles:
        top.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    # every site the run drained: its weight fell to 0, came back in steps or after a rollback
    moved = [p.site for p in report.phases if p.phase == Phase.DRAINING and p.site]
    for site in dict.fromkeys([*moved, *(t.site for t in report.traffic)]):
        points = [t for t in report.traffic if t.site == site]
        xs = [0.0] + [t.ts - t0 for t in points]
        ys = [100] + [t.percent for t in points]
        # the site is drained before the gate, and back at full weight after a rollback or the steps
        drained = next((p.start for p in report.phases if p.site == site and p.phase == Phase.DRAINING), None)
        if drained is not None:
            xs.insert(1, drained - t0)
            ys.insert(1, 0)
            xs.sort()
        back = next((r.started for r in report.rollbacks if r.site == site), None)
        if back is not None:
            xs.append(back - t0)
            ys.append(100)
        xs.append(last - t0)
        ys.append(ys[-1])
        bottom.step(xs, ys, where="post", label=site)
    bottom.set_ylim(-5, 105)
    bottom.set_ylabel("weight %")
    bottom.set_xlabel("seconds since the run started")
    if moved or report.traffic:
        bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    fig.align_ylabels()
    return _svg(fig)


def stage_chart(stage: StageReport) -> str:
    """A synthetic stage: SER and setup delay (p50 to p95) per number, canary against baseline.
    The live steps: calls and failures per step."""
    if stage.live_steps:
        return _live(stage)
    numbers = [n.number for n in stage.numbers]
    x = list(range(len(numbers)))
    fig = Figure(figsize=(10, 2.6))
    ser_ax, srd_ax = fig.subplots(1, 2)
    w = 0.38
    for offset, side, colour in ((-w / 2, "canary", CANARY), (w / 2, "baseline", BASELINE)):
        arms = [getattr(n, side) for n in stage.numbers]
        ser_ax.bar([i + offset for i in x], [(a.ser or 0.0) * 100 for a in arms], width=w, color=colour, label=side)
        p50 = [a.srd_p50_ms or 0.0 for a in arms]
        p95 = [a.srd_p95_ms or 0.0 for a in arms]
        srd_ax.bar([i + offset for i in x], [hi - lo for lo, hi in zip(p50, p95, strict=True)], bottom=p50,
                   width=w, color=colour, alpha=0.6, label=f"{side} p50-p95")
        srd_ax.scatter([i + offset for i in x], p50, color=colour, marker="_", s=200)
    for ax, title in ((ser_ax, "SER % per number"), (srd_ax, "setup delay ms (p50 to p95)")):
        ax.set_xticks(x, numbers)
        ax.set_title(title, fontsize=9)
    ser_ax.set_ylim(0, 105)
    top_ms = max([a.srd_p95_ms or 0.0 for n in stage.numbers for a in (n.canary, n.baseline)], default=0.0)
    srd_ax.set_ylim(0, top_ms * 1.15 or 1.0)
    srd_ax.legend(fontsize=7, frameon=False)
    ser_ax.legend(fontsize=7, frameon=False, loc="lower left")
    return _svg(fig)


def _live(stage: StageReport) -> str:
    steps: Sequence[str] = [f"{s.percent}%" for s in stage.live_steps]
    fig = Figure(figsize=(10, 2.2))
    ax = fig.subplots()
    ax.bar(steps, [s.attempts for s in stage.live_steps], color=BASELINE, label="live calls")
    ax.bar(steps, [s.failed for s in stage.live_steps], color=CANARY, label="failed")
    ax.set_title("live traffic steps: the public's calls at the site", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)

