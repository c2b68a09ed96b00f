"""`callfleet plan`: print the ordered rollout plan (the plan `upgrade` executes) or the rule it breaks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import (
    InventoryOpt,
    JsonOpt,
    LimitOpt,
    console,
    default_inventory,
    emit_json,
    handle_errors,
)
from orchestrator.cli.estate_cmd import load
from orchestrator.cli.rollout_cmd import JournalOpt, journal_path, live_age
from orchestrator.errors import RemoteError
from orchestrator.estate.limit import parse_limit
from orchestrator.policy.load import load_policy
from orchestrator.policy.rollout import RolloutPolicy
from orchestrator.rollout.plan import Plan, active_freeze, build_plan

ROLE_STYLE = {"canary": "bold yellow", "wave": "", "reserve": "cyan"}


def duration(seconds: float) -> str:
    """A bake for people: 45s, 90m, 4h, 2d (exact seconds when no unit divides them)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def print_plan(plan: Plan, policy: RolloutPolicy, *, now: datetime, live_s: float = 0.0) -> None:
    """The plan as a table: one row per wave, then the skipped sites, the reserve, the digest."""
    table = Table(title=f"plan: estate {plan.estate} -> {plan.target} (policy {plan.policy})")
    for col in ("wave", "site", "role", "from -> to", "traffic steps (weight % / bake)", "bake",
                "approval", "fleet-bake gate"):
        table.add_column(col)
    for w in plan.waves:
        steps = " ".join(f"{s.weight}%/{duration(s.bake_s)}" for s in w.traffic_steps)
        style = ROLE_STYLE[w.role]
        table.add_row(str(w.index), w.site, f"[{style}]{w.role}[/]" if style else w.role,
                      f"{','.join(w.from_releases)} -> {w.to_release}", steps, duration(w.bake_s),
                      "required" if w.approval_required else "-",
                      f"after {duration(w.not_before_fleet_bake_s)} fleet-wide" if w.not_before_fleet_bake_s else "-")
    if plan.waves:
        console.print(table)
        console.print("every wave: drain, upgrade, gate (synthetic calls to every number, canary against "
                      "baseline sites, reconnection drill, soak), traffic steps, bake; one site at a time")
    else:
        console.print(f"nothing to do: every site of {plan.estate} already runs {plan.target}")
    if plan.skipped:
        console.print(f"already on {plan.target} (skipped): {', '.join(plan.skipped)}")
    if plan.limit is not None:
        console.print(f"--limit {','.join(plan.limit)}: left as they are: {', '.join(plan.unlimited) or 'none'}")
    if plan.standing:
        days = policy.rollout.reserve.standing_days
        console.print(f"standing reserve: {', '.join(plan.standing)} keep(s) their release until {plan.target} has "
                      f"been live {days:g} days on this estate ({live_s / 86400:.1f} so far, by the journal)")
    held = "the sites left as they are" if plan.unlimited else "none"
    console.print(f"version-diversity reserve: {', '.join(plan.reserve) or held}")
    freeze = active_freeze(policy, now)
    if freeze is not None:
        console.print(f"[yellow]note:[/] a freeze window is in force now ({freeze.describe()}): "
                      "`upgrade` would wait until it ends")
    console.print(f"digest: {plan.digest}")


DETAILED_CHANGES = 2  # --detailed-exitcode: the plan would change sites (Terraform's convention)


@handle_errors
def plan(
    to: Annotated[str, typer.Option("--to", help="Release version to roll out.")],
    policy: Annotated[Path | None, typer.Option(help="Rollout policy YAML (default: policies/default.yml).")] = None,
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    journal: JournalOpt = None,
    json_out: JsonOpt = False,
    observed: Annotated[bool, typer.Option(
        "--observed/--declared",
        help="Plan from the release each host really runs (read over SSH, as `upgrade` does) or from the "
             "inventory alone (no network).")] = True,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode",
        help="Exit 0 when no site would change, 2 when some would (as Terraform's plan); an error keeps its "
             "own code, and with --json its document has `error` where a plan has `waves`.")] = False,
) -> None:
    """Print the ordered rollout plan: canary first, one site per wave with its traffic steps,
    bake and approval, the version-diversity reserve last, and the plan's digest (pass it to
    `upgrade --expect-digest`). Refuses, with the rule it breaks, a policy or request that would
    change two sites at once, skip the canary or leave no known-good reserve (exit 2).

    With --limit only those sites are planned; the plan records the limit and the sites it
    leaves as they are, and `upgrade --limit` with the same sites executes it."""
    pol = load_policy(policy)
    estate = load(inventory)
    sites = parse_limit(estate, limit)
    if observed:
        # Imported here: it brings in the SSH stack, which --declared never needs.
        from orchestrator.rollout.facts import observe

        try:
            estate = observe(estate)
        except RemoteError as exc:
            raise RemoteError(exc.message, hint="`callfleet plan --declared` plans from the inventory alone; "
                              "`upgrade` will still need every host") from None
    live_s = 0.0
    if pol.rollout.reserve.standing_days > 0:
        live_s = live_age(pol, journal_path(inventory or default_inventory(), journal), estate.name, to)
    result = build_plan(estate=estate, policy=pol, target=to, limit=sites, target_live_s=live_s)
    if json_out:
        emit_json(result)
    else:
        print_plan(result, pol, now=datetime.now(UTC), live_s=live_s)
    if detailed_exitcode and result.waves:
        raise typer.Exit(DETAILED_CHANGES)
