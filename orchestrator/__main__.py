"""`python -m orchestrator` runs the callfleet CLI."""

from orchestrator.cli.main import run

run()
