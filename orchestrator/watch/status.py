"""The one-line foreground status of a round (rich markup). Pure."""

from __future__ import annotations

from orchestrator.watch.leader import Role
from orchestrator.watch.report import RoundReport

_STATUS = {"ok": "[green]OK[/]", "fail": "[bold red]FAIL[/]", "unknown": "[yellow]?[/]"}


def status_line(report: RoundReport) -> str:
    """`round 7 12:00:03  site1 OK  site2 FAIL(drained) ...  | incidents: ... | actions`."""
    if report.role is Role.STANDBY:
        return f"round {report.round} {report.at[11:19]}  [dim]standby[/]: " + "; ".join(report.notes)
    parts = [f"round {report.round} {report.at[11:19]}"]
    for site, line in report.sites.items():
        mark = _STATUS.get(line.status, line.status)
        if line.drained:
            mark += "[dim](drained)[/]"
        parts.append(f"{site} {mark}")
    text = "  ".join(parts)
    if report.incidents:
        items = []
        for inc in report.incidents:
            what = inc["site"] or "estate"
            if inc["kind"] == "supervision_blind":
                what = f"blind:{inc['source']}" + (f"@{inc['site']}" if inc["site"] else "")
            elif inc["failing_numbers"]:
                what += " " + ",".join(inc["failing_numbers"])
            items.append(what + (f" held: {inc['held']}" if inc["held"] else ""))
        text += f"  | [bold red]{len(items)} incident(s):[/] " + "; ".join(items)
    for ev in report.events:
        text += f"  | {ev['kind'].removeprefix('incident_')} {ev['site'] or ev['incident_kind']}"
    for act in report.actions:
        text += f"  | {act['action']} {act['site']} " + ("ok" if act["ok"] else f"[red]failed: {act['error']}[/]")
    return text
