"""`callfleet upgrade` and `callfleet rollout status|history|resume|abort|approve|advance`."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import (
    InventoryOpt,
    JsonOpt,
    LimitOpt,
    console,
    default_inventory,
    emit_json,
    handle_errors,
)
from orchestrator.cli.documents import Approval, OutcomeDocument, RunEvents, RunList, RunStatusDocument
from orchestrator.errors import CallfleetError, InvalidInput
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.limit import parse_limit
from orchestrator.estate.model import Estate
from orchestrator.policy.load import DEFAULT_POLICY, load_policy
from orchestrator.policy.rollout import RolloutPolicy
from orchestrator.release.store import default_store, find_bundle
from orchestrator.rollout.executor import Executor, Outcome, Ports
from orchestrator.rollout.facts import observe
from orchestrator.rollout.journal import Journal, Run, live_age_s, resolve_run
from orchestrator.rollout.machine import TERMINAL
from orchestrator.rollout.plan import Plan, build_plan
from orchestrator.site.ops import SiteOps
from orchestrator.traffic.steering import dispatcher_for

StoreOpt = Annotated[Path | None, typer.Option(
    help="Release store holding `callserver-<V>/` (default: $CALLFLEET_RELEASE_STORE, else the lab's bundles/).")]
app = typer.Typer(help="Drive rollouts: status, history, resume after a crash, abort, approvals, "
                       "`undo` (every upgraded site back, one at a time), and `advance` for scheduled CI "
                       "jobs (one bounded step, exit 10 while waiting).",
                  no_args_is_help=True)

JournalOpt = Annotated[str | None, typer.Option("--journal", help="Rollout journal: a SQLite file (or "
                                                "sqlite:///FILE), or postgresql://USER@HOST/DB shared by CI "
                                                "runners. Default: $CALLFLEET_JOURNAL, else "
                                                ".callfleet/journal.sqlite beside the inventory.")]
EXIT_HELP = ("Exit codes: 0 completed (or aborted on request), 4 halted before touching anything, 6 halted "
             "after a failed gate (site rolled back, traffic restored), 7 rollback failed (site left drained), "
             "8 halted on an inconclusive gate, 9 another rollout holds the lock, 10 waiting (bake, approval).")


def journal_path(inventory: Path, journal: str | None) -> str:
    """Where the journal of this estate lives (a file, or a store URL)."""
    if journal:
        return journal
    env = os.environ.get("CALLFLEET_JOURNAL")
    return env or str(inventory.resolve().parent / ".callfleet" / "journal.sqlite")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _observed(inventory: Path, json_out: bool) -> Estate:
    """The estate with each host's release as the host reports it."""
    declared = load_inventory(inventory)
    try:
        # The plan was built from the observed releases; the gate's baselines (sites still on
        # the wave's from-release) must be chosen from the same truth, not from the inventory.
        return observe(declared)
    except CallfleetError as exc:
        # A rollback must still be attempted when a host does not answer: it fails and alerts
        # on its own if the host is really gone. Only the baselines' preference loses.
        if not json_out:
            console.print(f"[yellow]could not read every host's release ({exc.message}); "
                          "using the inventory's[/]")
        return declared


def _ports(inventory: Path, target: str, store: Path | None, json_out: bool,
           observed: Estate | None = None, *, need_bundle: bool = True) -> Ports:
    """The composition root of a drive: every port wired from the estate as the hosts report it
    (`observed`: already read by the caller, as `upgrade` does to plan). A fleet rollback
    (`need_bundle` False) installs nothing: the target's bundle may be gone from the store."""
    from orchestrator.metrics.prometheus import provider_for

    estate = observed or _observed(inventory, json_out)
    try:
        bundle: Path | None = find_bundle(store or default_store(), target)
    except InvalidInput:
        if need_bundle:
            raise
        bundle = None
    say = None if json_out else (lambda m: console.print(f"[dim]{_now()}[/] {m}"))
    ops = SiteOps(estate=estate, inventory=inventory, steering=dispatcher_for(estate),
                  on_event=None)
    return Ports(estate=estate, site_ops=ops, bundle=bundle,
                 metrics=provider_for(estate) if estate.metrics_url else None, progress=say)


def live_age(policy: RolloutPolicy, journal: str, estate: str, target: str) -> float:
    """How long `target` has been live on `estate` (the standing reserve's clock); read from the
    journal only when the policy keeps a standing reserve."""
    if policy.rollout.reserve.standing_days <= 0:
        return 0.0
    return live_age_s(journal, estate=estate, target=target, now=time.time())


def _now() -> str:
    return time.strftime("%H:%M:%S")


def print_plan(plan: Plan) -> None:
    """The ordered plan as a table."""
    table = Table(title=f"plan: {plan.estate} -> {plan.target} (policy {plan.policy})")
    for col in ("wave", "site", "role", "from", "traffic steps %", "bake s", "approval", "fleet bake s"):
        table.add_column(col)
    for w in plan.waves:
        table.add_row(str(w.index), w.site, w.role, ",".join(w.from_releases),
                      " ".join(str(s.weight) for s in w.traffic_steps), f"{w.bake_s:g}",
                      "yes" if w.approval_required else "", f"{w.not_before_fleet_bake_s:g}" if
                      w.not_before_fleet_bake_s else "")
    console.print(table)
    if plan.skipped:
        console.print(f"already on {plan.target}: {', '.join(plan.skipped)}")
    if plan.standing:
        console.print(f"standing reserve (keeps its release until {plan.target} has been live long enough): "
                      f"{', '.join(plan.standing)}")
    if plan.limit is not None:
        console.print(f"--limit {','.join(plan.limit)}: left as they are: {', '.join(plan.unlimited) or 'none'}")
    console.print(f"version-diversity reserve: {', '.join(plan.reserve) or 'none'}; digest {plan.digest[:16]}")


def _finish(outcome: Outcome, journal: Journal, json_out: bool, junit: Path | None) -> None:
    if junit is not None:
        write_junit(journal, outcome.run, junit)
    if json_out:
        emit_json(OutcomeDocument(**outcome.model_dump(), journal=journal.where))
    else:
        colour = {"completed": "green", "waiting": "yellow", "aborted": "yellow", "halted": "bold red"}[outcome.kind]
        console.print(f"rollout {outcome.run}: [{colour}]{outcome.kind}[/] ({outcome.phase}, wave {outcome.wave}): "
                      f"{outcome.message}")
    raise typer.Exit(outcome.exit_code)


def write_junit(journal: Journal, run_id: str, path: Path) -> None:
    """JUnit XML: one test case per gate (stage), failures carrying the reasons."""
    from xml.etree import ElementTree as ET

    suite = ET.Element("testsuite", name=f"callfleet rollout {run_id}")
    cases = failures = 0
    for ev in journal.events(run_id, kind="gate"):
        for stage in ev.data.get("stages", [ev.data]):
            cases += 1
            case = ET.SubElement(suite, "testcase", classname=f"gate.{ev.site}", name=str(stage.get("stage")),
                                 time=str(stage.get("seconds", 0)))
            if stage.get("verdict") != "PASS":
                failures += 1
                fail = ET.SubElement(case, "failure", message=str(stage.get("verdict")))
                fail.text = "\n".join(stage.get("reasons", []))
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _drive(journal: Journal, run: Run, *, inventory: Path, store: Path | None, wait: Literal["sleep", "return"],
           json_out: bool, junit: Path | None, observed: Estate | None = None) -> None:
    policy_path = Path(run.policy)
    recorded = run.progress.policy_digest
    # A fleet rollback uses no policy value (no gate, no bake): a policy edited since the run
    # was planned must not stand between an operator and undoing a bad release.
    undoing = bool(run.progress.undo_requested or run.progress.fleet)
    if recorded and not undoing and policy_path.exists() and _file_digest(policy_path) != recorded:
        raise InvalidInput(f"{policy_path} changed since rollout {run.id} was planned; the plan printed is the plan "
                           "executed: abort this run and plan again")
    plan = Plan.model_validate(run.plan)
    if plan.digest != run.digest:
        raise InvalidInput(f"rollout {run.id}: the journalled plan does not match its digest (tampered journal?)")
    ports = _ports(inventory, run.target, store, json_out, observed, need_bundle=not undoing)
    from orchestrator.rollout.alerts import rollout_alerter

    alerter, note = rollout_alerter()
    ports.alert = alerter
    if not json_out:
        console.print(f"[dim]{note}[/]")
    policy = load_policy(policy_path) if not undoing or policy_path.is_file() else RolloutPolicy()
    if ports.metrics is not None:
        from orchestrator.guard.observe import EstateObserver

        ports.guard_observer = EstateObserver(estate=ports.estate, metrics=ports.metrics,
                                              probe_calls_per_number=policy.rollout.guard.probe_calls_per_number)
    executor = Executor(journal=journal, run_id=run.id, policy=policy, ports=ports, wait=wait)
    outcome = executor.drive()
    if alerter is not None and alerter.handles and not alerter.flush():
        # Bounded by the channels' deadlines; the store keeps what is still undelivered.
        journal.record(run.id, "alert-error", data={"error": "deliveries still pending at exit"})
    _finish(outcome, journal, json_out, junit)


@handle_errors
def upgrade(
    to: Annotated[str, typer.Option("--to", help="Release version to roll out.")],
    policy: Annotated[Path | None, typer.Option(help="Rollout policy YAML (default policies/default.yml).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation (pipelines).")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return at the first bake or approval (exit 10); "
                                          "continue with `rollout advance`.")] = False,
    expect_digest: Annotated[str | None, typer.Option(help="Refuse unless the plan has this digest "
                                                      "(from `callfleet plan`).")] = None,
    store: Annotated[Path | None, typer.Option(help="Release store holding `callserver-<V>/`.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write the gates as JUnit XML here.")] = None,
    journal: JournalOpt = None,
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Roll a release out across the estate: canary first, one site at a time, each drained,
    upgraded, gated, given live traffic in steps and baked; a failed gate rolls the site back,
    restores its traffic, halts and alerts.

    Exit codes: 0 completed, 4 halted before touching anything, 6 halted after a failed gate
    (site rolled back), 7 rollback failed, 8 inconclusive gate, 9 another rollout holds the lock,
    10 waiting (with --no-wait).

    With --limit only those sites change (the same plan as `plan --limit`); the others keep
    their release and count towards the version-diversity reserve."""
    inv = inventory or default_inventory()
    pol_path = policy or DEFAULT_POLICY
    pol = load_policy(pol_path)
    declared = load_inventory(inv)
    sites = parse_limit(declared, limit)  # before any host is contacted
    estate = observe(declared)
    plan = build_plan(estate=estate, policy=pol, target=to, limit=sites,
                      target_live_s=live_age(pol, journal_path(inv, journal), estate.name, to))
    find_bundle(store or default_store(), to)
    if expect_digest and not plan.digest.startswith(expect_digest):
        raise InvalidInput(f"--expect-digest: the plan now has digest {plan.digest[:16]}, not {expect_digest}; "
                           "the estate or policy changed since it was printed")
    if not json_out:
        print_plan(plan)
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("refusing to start a rollout without confirmation: pass --yes")
        typer.confirm(f"start rolling {to} out to {len(plan.waves)} site(s)?", abort=True)
    j = Journal(journal_path(inv, journal), create=True)
    run = j.create_run(plan=plan.model_dump(mode="json"), digest=plan.digest, target=to,
                       inventory=str(inv.resolve()), policy=str(pol_path.resolve()))
    j.update_progress(run.id, {"policy_digest": _file_digest(pol_path)})
    if not json_out:
        console.print(f"rollout {run.id} started; journal {j.where}")
    _drive(j, j.run(run.id), inventory=inv, store=store, wait="return" if no_wait else "sleep", json_out=json_out,
           junit=junit, observed=estate)


def _journal(inventory: Path | None, journal: str | None, *, read_only: bool = False) -> tuple[Journal, Path]:
    """An existing journal (never created by a command that only reads or continues a run)."""
    inv = inventory or default_inventory()
    return Journal(journal_path(inv, journal), read_only=read_only), inv


_resolve = resolve_run  # the run named, else the latest


RunArg = Annotated[str | None, typer.Argument(help="Run id (default: the latest run).")]


@app.command()
@handle_errors
def status(run_id: RunArg = None, journal: JournalOpt = None, inventory: InventoryOpt = None,
           html: Annotated[Path | None, typer.Option("--html", help="Also write the run's report (`callfleet "
                                                     "report`) as one self-contained HTML page here.")] = None,
           watch: Annotated[bool, typer.Option("--watch", help="Keep the view live until the run ends, then exit "
                                               "with the run's exit code (with --json: one document per "
                                               "change, one per line).")] = False,
           interval: Annotated[float, typer.Option(help="--watch: seconds between reads of the journal.",
                                                   min=0.1, max=60)] = 2.0,
           json_out: JsonOpt = False) -> None:
    """Where a run is: phase, wave, plan, outcome, lock (and, with --html, its full report).

    With --watch, a live view that follows the run (from any machine that reads the journal)
    until it ends; the exit code is then the run's: 0 completed or aborted, its halt code
    (4, 6, 7, 8) if halted. Ctrl-C stops watching and changes nothing."""
    j, _ = _journal(inventory, journal, read_only=True)
    run = _resolve(j, run_id)
    if watch:
        if html is not None:
            raise InvalidInput("--html and --watch: write the report once the run has ended")
        _watch(j, run.id, interval=interval, json_out=json_out)
        return
    report_file = None
    if html is not None:
        from orchestrator.report.sources import load_report
        from orchestrator.report.write import write_html

        report_file = write_html(load_report(j.where, run.id), html, source=j.where)
    if json_out:
        emit_json(RunStatusDocument(**run.model_dump(), lock_holder=j.lock_holder(),
                                    report_html=str(report_file) if report_file else None))
        return
    console.print(_status_view(j, run, events=0))
    if report_file is not None:
        console.print(f"report: {report_file.as_uri()}")


def _status_view(j: Journal, run: Run, *, events: int) -> Group:
    """The run's header, its waves and (events > 0) its latest journal events."""
    plan = Plan.model_validate(run.plan)
    parts: list[RenderableType] = [
        Text.from_markup(f"rollout {run.id} to {run.target} by {run.actor}: [bold]{run.phase}[/] at wave {run.wave}"
                         + (f" - {escape(run.outcome)}" if run.outcome else ""))]
    if plan.limit is not None:
        parts.append(Text(f"--limit {','.join(plan.limit)}: left as they are: {', '.join(plan.unlimited) or 'none'}"))
    done = set(run.progress.done_waves)
    table = Table()
    for col in ("wave", "site", "role", "state"):
        table.add_column(col)
    for w in plan.waves:
        state = "done" if w.index in done else (str(run.phase) if w.index == run.wave else "")
        table.add_row(str(w.index), w.site, w.role, state)
    parts.append(table)
    if events:
        for ev in j.events(run.id)[-events:]:
            what = ev.data.get("effect") or ev.data.get("from") or ""
            parts.append(Text(f"{time.strftime('%H:%M:%S', time.localtime(ev.ts))} {ev.kind} {ev.phase} "
                              f"{ev.site or ''} {what}".rstrip(), style="dim"))
    return Group(*parts)


def _watch(j: Journal, run_id: str, *, interval: float, json_out: bool) -> None:
    """Follow a run until it ends; exit with its code."""
    from orchestrator.rollout.decide import Finish, RunView, decide

    def seen(r: Run) -> tuple[object, ...]:
        return (r.phase, r.wave, r.updated, r.outcome)

    run = j.run(run_id)
    last: tuple[object, ...] | None = None
    view: AbstractContextManager[Live | None] = (
        nullcontext() if json_out else Live(console=console, auto_refresh=False, transient=False))
    with view as live:
        while True:
            if seen(run) != last:
                last = seen(run)
                if json_out:
                    emit_json(RunStatusDocument(**run.model_dump(), lock_holder=j.lock_holder(), report_html=None),
                              line=True)
                elif live is not None:
                    live.update(_status_view(j, run, events=5), refresh=True)
            if run.phase in TERMINAL:
                break
            time.sleep(interval)
            run = j.run(run_id)
    end = decide(RunView(id=run.id, phase=run.phase, wave=run.wave, progress=run.progress, outcome=run.outcome),
                 Plan.model_validate(run.plan), time.time())
    raise typer.Exit(int(end.exit_code) if isinstance(end, Finish) else 1)


@app.command()
@handle_errors
def history(run_id: RunArg = None, journal: JournalOpt = None, inventory: InventoryOpt = None,
            json_out: JsonOpt = False) -> None:
    """The journal of a run (every transition, effect, gate, approval), or the list of runs."""
    j, _ = _journal(inventory, journal, read_only=True)
    if run_id is None:
        runs = j.runs()
        if json_out:
            emit_json(RunList(journal=j.where, runs=list(runs)))
            return
        for r in runs:
            console.print(f"{r.id}  to {r.target:<16} {r.phase:<14} {r.outcome or ''}")
        return
    events = j.events(run_id)
    if json_out:
        emit_json(RunEvents(journal=j.where, run=run_id, events=events))
        return
    import time as _t

    for e in events:
        detail = {k: v for k, v in e.data.items() if k not in ("stages", "numbers")}
        console.print(f"{_t.strftime('%H:%M:%S', _t.localtime(e.ts))} {e.kind:<12} {e.phase:<16} w{e.wave} "
                      f"{e.site or '':<8} {str(detail)[:150]}")


@app.command()
@handle_errors
def resume(run_id: RunArg = None, store: StoreOpt = None, journal: JournalOpt = None,
           inventory: InventoryOpt = None, json_out: JsonOpt = False, junit: Annotated[Path | None, typer.Option()]
           = None) -> None:
    """Continue a run after a crash (or a kill -9): the phase in flight is redone (every effect
    is idempotent), gates are re-run from their start, completed waves never redone."""
    j, inv = _journal(inventory, journal)
    run = _resolve(j, run_id)
    _drive(j, run, inventory=Path(run.inventory) if not inventory else inv, store=store, wait="sleep",
           json_out=json_out, junit=junit)


@app.command()
@handle_errors
def advance(run_id: RunArg = None, store: StoreOpt = None, journal: JournalOpt = None,
            inventory: InventoryOpt = None, json_out: JsonOpt = False,
            junit: Annotated[Path | None, typer.Option()] = None) -> None:
    """One bounded step for scheduled CI jobs: move on when the bake has elapsed and health is
    green, else say what the run waits for and exit 10. Idempotent; a bake of days needs no
    live process."""
    j, inv = _journal(inventory, journal)
    run = _resolve(j, run_id)
    _drive(j, run, inventory=Path(run.inventory) if not inventory else inv, store=store, wait="return",
           json_out=json_out, junit=junit)


@app.command()
@handle_errors
def approve(run_id: Annotated[str, typer.Argument(help="Run id.")],
            wave: Annotated[int, typer.Option(help="Wave to approve.")],
            by: Annotated[str, typer.Option(help="Who approves (recorded in the journal).")],
            journal: JournalOpt = None, inventory: InventoryOpt = None, json_out: JsonOpt = False) -> None:
    """Record an approval for a wave that needs one (who and when go into the journal)."""
    j, _ = _journal(inventory, journal)
    run = j.run(run_id)
    plan = Plan.model_validate(run.plan)
    if not 1 <= wave <= len(plan.waves):
        raise InvalidInput(f"--wave: run {run_id} has waves 1..{len(plan.waves)}")
    if run.phase in TERMINAL:
        raise InvalidInput(f"run {run_id} is {run.phase}: nothing to approve")
    j.approve(run_id, wave, by)
    j.record(run_id, "approval", site=plan.waves[wave - 1].site, data={"wave": wave, "by": by})
    if json_out:
        emit_json(Approval(run=run_id, wave=wave, approved_by=by))
    else:
        console.print(f"wave {wave} ({plan.waves[wave - 1].site}) of {run_id} approved by {by}")


@app.command()
@handle_errors
def abort(run_id: Annotated[str, typer.Argument(help="Run id.")],
          by: Annotated[str | None, typer.Option(help="Who aborts (journal).")] = None,
          store: StoreOpt = None, journal: JournalOpt = None,
          inventory: InventoryOpt = None, json_out: JsonOpt = False) -> None:
    """Stop a run: the site in flight (if any) is rolled back and its traffic restored."""
    from orchestrator.rollout.journal import actor

    j, _ = _journal(inventory, journal)
    run = j.run(run_id)
    if run.phase in TERMINAL:
        raise InvalidInput(f"run {run_id} is already {run.phase}")
    who = by or actor()
    j.update_progress(run_id, {"abort_requested": who})
    j.record(run_id, "abort", data={"by": who})
    # the driver (this process, or the one holding the run) rolls the site in flight back
    _drive(j, j.run(run_id), inventory=Path(run.inventory), store=store, wait="return", json_out=json_out,
           junit=None)


@app.command()
@handle_errors
def undo(run_id: Annotated[str, typer.Argument(help="Run id.")],
         by: Annotated[str | None, typer.Option(help="Who asks for it (journal, alerts).")] = None,
         yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation (pipelines).")] = False,
         store: StoreOpt = None, journal: JournalOpt = None,
         inventory: InventoryOpt = None, json_out: JsonOpt = False) -> None:
    """Fleet rollback on demand: every site this run upgraded goes back to its from-release, one
    at a time, the newest first, each drained before and its traffic restored after.

    A running run stops where it is (the site in flight is one of those taken back); a finished
    one (completed, halted or aborted) is reopened, if no other rollout holds the lock. The run
    ends halted. It installs nothing: the release's bundle need not be in the store any more.
    Exit codes: 11 every site back, 7 a site's rollback failed (left drained), 2 nothing to
    undo, 9 another rollout holds the lock."""
    from orchestrator.rollout.decide import RunView, fleet_rollback
    from orchestrator.rollout.journal import actor
    from orchestrator.rollout.machine import Phase

    j, _ = _journal(inventory, journal)
    run = j.run(run_id)
    plan = Plan.model_validate(run.plan)
    who = by or actor()
    view = RunView(id=run.id, phase=run.phase, wave=run.wave, progress=run.progress, outcome=run.outcome)
    if run.progress.fleet is not None and not run.progress.fleet.queue and run.phase in TERMINAL:
        raise InvalidInput(f"run {run_id} was already rolled back ({run.progress.fleet.reason})")
    fleet = fleet_rollback(view, plan, reason=f"undone by {who}")
    if not fleet.queue and run.phase in TERMINAL:
        raise InvalidInput(f"run {run_id} upgraded no site: nothing to undo")
    if not json_out:
        console.print(f"rollout {run_id}: taking back {', '.join(fleet.queue) or 'the site in flight'} "
                      f"to the release each ran before")
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("refusing to roll the fleet back without confirmation: pass --yes")
        typer.confirm("roll these sites back?", abort=True)
    if run.phase in TERMINAL:
        j.reopen(run_id, Phase.FLEET_ROLLING_BACK, progress={"undo_requested": who, "fleet": fleet},
                 data={"undo_by": who})
    else:
        j.update_progress(run_id, {"undo_requested": who})
    j.record(run_id, "undo", data={"by": who})
    _drive(j, j.run(run_id), inventory=Path(run.inventory), store=store, wait="return", json_out=json_out,
           junit=None)
