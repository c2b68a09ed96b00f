"""`callfleet gate`: run the health gate on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import InventoryOpt, JsonOpt, console, emit_json, handle_errors
from orchestrator.cli.estate_cmd import load
from orchestrator.errors import InvalidInput
from orchestrator.gate.runner import SYNTHETIC_STAGES, GateResult, choose_baselines, run_gate
from orchestrator.gate.stages import StageResult
from orchestrator.gate.verdict import Verdict
from orchestrator.policy.load import load_policy

COLOUR = {Verdict.PASS: "green", Verdict.FAIL: "bold red", Verdict.INCONCLUSIVE: "yellow"}
EXIT = {Verdict.PASS: 0, Verdict.FAIL: 5, Verdict.INCONCLUSIVE: 8}


def print_stage(result: StageResult) -> None:
    """One stage as a readable table: per number, canary against baseline."""
    console.print(f"[{COLOUR[result.verdict]}]{result.verdict}[/] {result.stage}: {result.calls} calls, "
                  f"{result.seconds:.1f}s")
    numbers = result.evidence.get("numbers", [])
    if numbers:
        table = Table(show_edge=False)
        for col in ("number", "verdict", "canary calls", "SER", "SRD p50/p95", "baseline SER",
                    "baseline p50/p95", "Fisher p", "MWU p"):
            table.add_column(col)
        for n in numbers:
            def ms(a: float | None, b: float | None) -> str:
                return f"{a if a is not None else '-':.0f}/{b if b is not None else '-':.0f}" \
                    if a is not None and b is not None else "-"

            def pct(x: float | None) -> str:
                return "-" if x is None else f"{100 * x:.1f}%"

            def pv(x: float | None) -> str:
                return "-" if x is None else f"{x:.2g}"

            v = Verdict(n["verdict"])
            table.add_row(n["number"], f"[{COLOUR[v]}]{v}[/]", str(n["canary_calls"]), pct(n["canary_ser"]),
                          ms(n["canary_srd_p50_ms"], n["canary_srd_p95_ms"]), pct(n["baseline_ser"]),
                          ms(n["baseline_srd_p50_ms"], n["baseline_srd_p95_ms"]), pv(n["fisher_p"]),
                          pv(n["mannwhitney_p"]))
        console.print(table)
    for mem in result.evidence.get("memory", []):
        console.print(f"  {mem['host']}: shm {mem['shm_bytes_per_call']:+.1f} B/call, "
                      f"rss {mem['rss_bytes_per_call']:+.1f} B/call over {mem['calls']} calls")
    for reason in result.reasons:
        console.print(f"  - {reason}")


def print_result(result: GateResult) -> None:
    """The gate's verdict line."""
    console.print(f"gate {result.site} (baseline {', '.join(result.baseline_sites)}): "
                  f"[{COLOUR[result.verdict]}]{result.verdict}[/] after {result.calls} calls in "
                  f"{result.seconds:.1f}s")


@handle_errors
def gate(
    site: Annotated[str, typer.Option("--site", "-s", help="Site to judge (drain it first in production).")],
    policy: Annotated[Path | None, typer.Option(help="Rollout policy YAML (default: policies/default.yml).")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="Baseline site(s) (default: chosen from the estate).")]
    = None,
    stage: Annotated[list[str] | None, typer.Option(help="Only these stages: synthetic+canary, drill, soak.")]
    = None,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the health gate on a site: synthetic calls to every number through each host,
    canary against baseline sites (Fisher exact, Mann-Whitney U, floors), the reconnection
    drill, and a soak watching memory per call.

    Exit 0 PASS, 5 FAIL, 8 INCONCLUSIVE (2 bad input, 3 SIPp missing, 4 a host unreachable)."""
    estate = load(inventory)
    pol = load_policy(policy)
    try:
        target = estate.site(site)
    except KeyError as exc:
        raise InvalidInput(f"--site: {exc.args[0]}") from None
    only = tuple(stage or SYNTHETIC_STAGES)
    unknown = [s for s in only if s not in SYNTHETIC_STAGES]
    if unknown:
        raise InvalidInput(f"--stage: unknown stage {unknown[0]!r} (stages: {', '.join(SYNTHETIC_STAGES)})")
    baselines = list(baseline or choose_baselines(estate, site, pol.gate.canary.baseline_sites))
    for b in baselines:
        if b == site or b not in {s.name for s in estate.sites}:
            raise InvalidInput(f"--baseline: {b!r} is not another site of the estate")
    result = run_gate(estate=estate, site=site, policy=pol.gate, baselines=baselines,
                      releases=sorted(target.releases), only=only,  # type: ignore[arg-type]
                      on_stage=None if json_out else print_stage)
    if json_out:
        emit_json(result)
    else:
        print_result(result)
    raise typer.Exit(EXIT[result.verdict])
