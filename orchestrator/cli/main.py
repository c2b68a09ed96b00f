"""Entry point of the `callfleet` command."""

from __future__ import annotations

import os
import sys

import typer

from orchestrator import __version__
from orchestrator.cli import (
    alert_cmd,
    estate_cmd,
    gate_cmd,
    lab_cmd,
    ops_cmd,
    plan_cmd,
    probe_cmd,
    provision_cmd,
    release_cmd,
    report_cmd,
    rollout_cmd,
    site_cmd,
    watch_cmd,
)

HELP = """\
callfleet upgrades an emergency-call estate one site at a time, canary first,
gating every step on synthetic emergency calls.

Start with the lab (a six-site estate of real Kamailio call servers):
`callfleet lab up && callfleet lab status && callfleet probe --all`

Every command takes `--json` for pipelines: one JSON document on stdout, errors
included (`{"error": {...}, "exit_code": N}`), each with a `schema_version`.

Exit codes: **0** ok, **1** internal error (a bug), **2** invalid input (inventory,
policy, release, arguments), **3** a required tool is missing, **4** a remote operation
failed or a rollout halted before touching anything, **5** a health check or gate
failed, **6** a change failed and the site was rolled back (traffic restored),
**7** a rollback failed (the site stays drained), **8** a gate was inconclusive,
**9** another rollout holds the lock, **10** a rollout is waiting (bake, approval,
freeze): `rollout advance` later.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode="markdown",
                  context_settings={"help_option_names": ["-h", "--help"]},
                  pretty_exceptions_enable=False)
app.add_typer(estate_cmd.app, name="estate")
app.add_typer(lab_cmd.app, name="lab")
app.add_typer(release_cmd.app, name="release")
app.add_typer(site_cmd.app, name="site")
app.add_typer(provision_cmd.app, name="provision")
app.command("probe")(probe_cmd.probe)
app.command("exec", context_settings=ops_cmd.EXEC_CONTEXT_SETTINGS)(ops_cmd.exec_command)
app.command("diag")(ops_cmd.diag)
app.command("gate")(gate_cmd.gate)
app.command("watch")(watch_cmd.watch)
app.command("plan")(plan_cmd.plan)
app.command("upgrade")(rollout_cmd.upgrade)
app.add_typer(rollout_cmd.app, name="rollout")
app.add_typer(report_cmd.app, name="report")
app.add_typer(alert_cmd.app, name="alert")
app.add_typer(alert_cmd.incidents_app, name="incidents")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"callfleet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """callfleet: safe, canary-first upgrades of emergency-call infrastructure."""


def run() -> None:
    """Console-script entry: unexpected exceptions become exit 1 with one line."""
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: no traceback for users
        if os.environ.get("CALLFLEET_DEBUG"):
            raise
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc} "
                         "(set CALLFLEET_DEBUG=1 for the traceback)\n")
        sys.exit(1)
