"""`callfleet report [RUN] [--html FILE] [--json]`: one rollout, readable at a glance; and
`callfleet report monthly --month YYYY-MM [--csv|--json] [--html FILE]`: the month's
emergency-call statistics from the watch journal (docs/REGULATORY.md).

`report` is a group whose first argument is a subcommand (`monthly`, `run`) or else the
rollout report's own arguments: `report RUN`, `report --html F`, `report` alone all mean
`report run ...` (a run literally named `monthly` is `report run monthly`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.core import Context
from typer.core import TyperGroup

from orchestrator.cli.common import InventoryOpt, JsonOpt, console, default_inventory, emit_json, handle_errors
from orchestrator.cli.rollout_cmd import JournalOpt, journal_path
from orchestrator.errors import InvalidInput
from orchestrator.report.model import RolloutReport
from orchestrator.report.write import write_html


class ReportGroup(TyperGroup):
    """Dispatch `report ARGS` to `report run ARGS` unless ARGS start with a subcommand or help."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first is None or (first not in self.commands and first not in ctx.help_option_names):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=ReportGroup, rich_markup_mode="markdown", help="""\
Reports: one rollout (`report [RUN] [--html FILE] [--json]`, the default) or the month's
emergency-call statistics (`report monthly --month YYYY-MM [--csv|--json] [--html FILE]`).""")

HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Write the report as one self-contained HTML page "
                                              "(inline CSS and SVG: opens without a network).")]
AlertsOpt = Annotated[Path | None, typer.Option("--alerts", help="Alert store with the deliveries (default: the "
                                                "alert config's store, when there is one).")]


def _summary(report: RolloutReport) -> None:
    r = report.run
    console.print(f"rollout {r.id} to {r.target}: [bold]{report.verdict}[/]" + (f" - {report.reason}"
                                                                               if report.reason else ""))
    for w in report.waves:
        console.print(f"  wave {w.index} {w.site:<10} {w.role:<8} {w.state}")
    for g in report.gates:
        for s in g.stages:
            if s.failing:
                console.print(f"  wave {g.wave} ({g.site}) stage {s.stage}: {s.verdict}: {'; '.join(s.reasons[:3])}")
    console.print(f"  alerts: {len(report.alerts)} deliveries; decisions: {len(report.decisions)}")


@app.command("run")
@handle_errors
def report(run_id: Annotated[str | None, typer.Argument(metavar="RUN",
                                                       help="Run id (default: the latest run).")] = None,
           html: HtmlOpt = None, alerts: AlertsOpt = None, journal: JournalOpt = None,
           inventory: InventoryOpt = None, json_out: JsonOpt = False) -> None:
    """The report of one rollout (`report RUN` is short for `report run RUN`): waves and
    phases over time with the traffic weights, each
    gate stage's canary against its baseline per number (calls, SER, setup delay, the tests
    against their boundaries), rollbacks, the public's live calls, alerts with their delivery
    status, approvals and aborts, and every verdict with its reasons.

    Exit codes: 0 ok; 2 an unknown run, a missing, foreign or unreadable journal or alert store,
    a page that cannot be written."""
    from orchestrator.report.sources import load_report

    path = journal_path(inventory or default_inventory(), journal)
    result = load_report(path, run_id, alerts=alerts)
    written = write_html(result, html, source=str(path)) if html else None
    if json_out:
        emit_json(result.model_dump(mode="json"))
        return
    _summary(result)
    if written:
        console.print(f"report: {written.as_uri()}")


MonthOpt = Annotated[str, typer.Option("--month", help="The month, YYYY-MM, in UTC.")]


def _numbers(inventory: Path | None) -> tuple[list[str], list[str]]:
    """The estate's numbers: from `-i` (errors exit 2), else the default inventory when it exists."""
    from orchestrator.estate.inventory import load_inventory

    path = inventory or default_inventory()
    if inventory is None and not path.exists():
        return [], [f"no inventory at {path}: numbers from the policy and the journal only"]
    return [n.number for n in load_inventory(path).numbers], []


def _monthly_summary(doc: Any) -> None:
    from rich.table import Table

    from orchestrator.report.monthly import _count, _pct

    table = Table(title=f"emergency calls {doc.month} (UTC), every {doc.interval_s or 0:g} s", title_justify="left")
    for col in ("number", "source", "seizures", "answered", "busy", "no answer", "rejected", "network failure",
                "ASR", "NER", "crossings"):
        table.add_column(col, justify="left" if col in ("number", "source") else "right")
    for n in doc.numbers:
        f = n.figures
        crossed = sum(1 for c in doc.crossings if c.number == n.number and c.source == n.source)
        table.add_row(n.number, n.source.value, _count(f.attempts), _count(f.answered), _count(f.user_busy),
                      _count(f.no_answer), _count(f.rejected), _count(f.network_failure), _pct(f.asr), _pct(f.ner),
                      str(crossed) if crossed else "")
    console.print(table)
    for c in doc.crossings:
        console.print(f"  [red]below[/] {c.number} ({c.source.value}) {c.metric.value.upper()} {c.scope.value}: "
                      f"{_pct(c.worst)} < {_pct(c.threshold)}, {c.intervals} interval(s) from "
                      f"{doc_when(c.start)} to {doc_when(c.end)}", soft_wrap=True)
    for note in doc.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)


def doc_when(ts: float) -> str:
    """A crossing's time for people."""
    from orchestrator.report.monthly import _when

    return _when(ts)


@app.command("monthly")
@handle_errors
def monthly(month: MonthOpt,
            csv_out: Annotated[bool, typer.Option("--csv", help="CSV on stdout: one row per number, source "
                                                  "and site, then one per threshold crossing.")] = False,
            html: HtmlOpt = None,
            policy: Annotated[Path | None, typer.Option("--policy", help="Policy YAML whose `watch.e425` holds the "
                                                        "thresholds per number (default: policies/default.yml).")]
            = None,
            journal: Annotated[str | None, typer.Option("--journal", help="Watch journal: a SQLite file or "
                                                        "postgresql://... (default: $CALLFLEET_WATCH_JOURNAL, else "
                                                        ".callfleet/watch.sqlite beside the inventory).")] = None,
            inventory: InventoryOpt = None, json_out: JsonOpt = False) -> None:
    """The month's emergency-call statistics (CPCE D.98-8-9/D.98-8-10) from what `callfleet
    watch` recorded: per number (the estate's and the policy's: 15, 17, 18, 112, ...) and
    source (probe: the watch's calls, per number; live: the public's calls at the edge, per
    site, number `all`), seizures by outcome, ITU-T E.425 ASR and NER, per site and in total,
    and every crossing of the number's thresholds (policy `watch.e425`).

    Exit codes: 0 ok (crossings included: they are findings, not errors); 2 a bad --month,
    --csv with --json, a missing or unreadable journal, policy or inventory, a page that cannot
    be written."""
    from orchestrator.policy.load import load_policy
    from orchestrator.report.monthly import to_csv
    from orchestrator.report.monthly import write_html as write_monthly
    from orchestrator.watch.journal import default_path, read_tallies
    from orchestrator.watch.monthly import build_monthly, parse_month

    if csv_out and json_out:
        raise InvalidInput("--csv and --json: choose one")
    span = parse_month(month)
    thresholds = load_policy(policy).watch.e425
    numbers, notes = _numbers(inventory)
    location = journal or default_path(inventory or default_inventory())
    rows, has_stats = read_tallies(location, start=span.start, end=span.end)
    if not has_stats:
        notes.append("this watch journal predates the call statistics (run `callfleet watch` with this version)")
    elif not rows:
        notes.append(f"no statistics recorded in {span.label}: the watch did not run that month")
    doc = build_monthly(rows, month=span, policy=thresholds, numbers=numbers, journal=str(location), notes=notes)
    written = write_monthly(doc, html, source=str(location)) if html else None
    if json_out:
        emit_json(doc.model_dump(mode="json"))
        return
    if csv_out:
        sys.stdout.write(to_csv(doc))
        return
    _monthly_summary(doc)
    if written:
        console.print(f"report: {written.as_uri()}")
