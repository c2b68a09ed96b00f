"""The monthly report as one self-contained HTML page (`report monthly --html FILE`) and as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from orchestrator import __version__
from orchestrator.policy.watch import E425Threshold
from orchestrator.report.write import write_page
from orchestrator.watch.monthly import Figures, MonthlyReport

FIGURE_COLUMNS = ("attempts", "answered", "user_busy", "no_answer", "rejected", "abandoned", "redirected",
                  "network_failure", "unclassified", "asr", "ner")
CSV_COLUMNS = ("record", "month", "source", "number", "site", *FIGURE_COLUMNS, "asr_min", "ner_min",
               "metric", "scope", "start", "end", "intervals", "worst", "threshold")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _count(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _row(f: Figures, t: E425Threshold) -> Markup:
    cells = [_count(getattr(f, c)) for c in FIGURE_COLUMNS[:9]]
    out = "".join(f"<td>{escape(c)}</td>" for c in cells)
    for ratio, limit in ((f.asr, t.asr_min), (f.ner, t.ner_min)):
        below = ratio is not None and ratio < limit and f.attempts >= t.min_attempts
        out += f"<td{' class=below' if below else ''}>{escape(_pct(ratio))}</td>"
    return Markup(out)


def render_html(report: MonthlyReport, *, source: str) -> str:
    """The page of `report`."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(when=_when, pct=_pct, count=_count,
                       interval=lambda s: "n/a" if s is None else f"{s:g} s")
    template = env.from_string((files("orchestrator.report") / "monthly.html.j2").read_text())
    return template.render(r=report, source=source, version=__version__, row=_row,
                           generated=_when(datetime.now(UTC).timestamp()))


def write_html(report: MonthlyReport, path: Path, *, source: str) -> Path:
    """Write the page (InvalidInput when it cannot be written); returns the absolute path."""
    return write_page(render_html(report, source=source), path)


def to_csv(report: MonthlyReport) -> str:
    """One `figures` row per number, source and site (site `all` for the total), then one
    `crossing` row per threshold crossing; ratios as fractions, times ISO 8601 UTC."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, restval="", lineterminator="\n")
    w.writeheader()
    for n in report.numbers:
        for site, f in [*((s.site, s.figures) for s in n.sites), ("all", n.figures)]:
            w.writerow({"record": "figures", "month": report.month, "source": n.source.value, "number": n.number,
                        "site": site, **{c: "" if getattr(f, c) is None else getattr(f, c) for c in FIGURE_COLUMNS},
                        "asr_min": n.threshold.asr_min, "ner_min": n.threshold.ner_min})
    for c in report.crossings:
        w.writerow({"record": "crossing", "month": report.month, "source": c.source.value, "number": c.number,
                    "site": "all", "attempts": c.attempts, "metric": c.metric.value, "scope": c.scope.value,
                    "start": _iso(c.start), "end": _iso(c.end), "intervals": c.intervals, "worst": c.worst,
                    "threshold": c.threshold})
    return buf.getvalue()
