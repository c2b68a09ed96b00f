"""`callfleet lab up|status|down|traffic`."""

import typer

app = typer.Typer(help="The lab estate on loopback.", no_args_is_help=True)
