"""Fabric adapter: ad-hoc commands and diagnostics on call-server hosts over SSH,
with host keys always verified against the estate's known_hosts."""

from orchestrator.fabricops.diag import DialogCounts, HostDiag, ShmMem, SiteDiag, diag
from orchestrator.fabricops.run import HostRun, RunReport, run_on_hosts, select_hosts

__all__ = ["DialogCounts", "HostDiag", "HostRun", "RunReport", "ShmMem", "SiteDiag", "diag", "run_on_hosts",
           "select_hosts"]
