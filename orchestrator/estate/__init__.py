"""The estate: the one source of truth for sites, hosts, capacity and emergency routes."""

from orchestrator.estate.model import EdgeRouter, EmergencyNumber, Estate, Host, Site

__all__ = ["EdgeRouter", "EmergencyNumber", "Estate", "Host", "Site"]
