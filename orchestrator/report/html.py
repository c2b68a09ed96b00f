"""The report as one self-contained HTML page: inline CSS and SVG, no script, no external
resource, so it opens from a file, an e-mail or a CI artefact without a network."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib.resources import files

import jinja2
from markupsafe import Markup

from orchestrator import __version__
from orchestrator.report import charts
from orchestrator.report.model import RolloutReport, Statistic, StatKind

_STAT_NAMES = {StatKind.FISHER: "Fisher (failures)", StatKind.MANN_WHITNEY: "Mann-Whitney (setup delay)",
               StatKind.POOLED_FISHER: "Fisher, all numbers", StatKind.SEQUENTIAL: "sequential"}


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _stat(s: Statistic) -> str:
    """`Fisher (failures) p=0.00012 < 0.01: crossed` (p-values fail below, e-values above)."""
    name = _STAT_NAMES[s.kind] + (f" {s.detail}" if s.detail else "")
    if s.value is None:
        return f"{name}: not computed"
    if s.kind == StatKind.SEQUENTIAL:
        text = f"{name} log e={s.value:.3g} / boundary {s.boundary:.3g}" if s.boundary is not None else \
            f"{name} log e={s.value:.3g}"
        return text + (f": crossed at second {s.second}" if s.crossed else "")
    if s.boundary is None:
        return f"{name} p={s.value:.3g} (boundary not recorded)"
    return f"{name} p={s.value:.3g} {'<' if s.crossed else '≥'} α {s.boundary:g}" + (": crossed" if s.crossed else "")


def _slug(text: object) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(when=_when, pct=_pct, ms=_ms, stat=_stat, slug=_slug)
    return env


def render(report: RolloutReport, *, source: str = "") -> str:
    """The page of `report`; `source` names the journal it was read from."""
    template = _environment().from_string((files("orchestrator.report") / "report.html.j2").read_text())
    stage_svgs = {(gi, si): Markup(charts.stage_chart(stage))
                  for gi, gate in enumerate(report.gates) for si, stage in enumerate(gate.stages)
                  if stage.numbers or stage.live_steps}
    return template.render(r=report, source=source, version=__version__,
                           timeline=Markup(charts.timeline(report)),
                           stage_svgs=stage_svgs, generated=_when(datetime.now(UTC).timestamp()))
