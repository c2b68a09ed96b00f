"""Identity callfleet gives itself on the wire."""

from __future__ import annotations

from orchestrator import __version__

USER_AGENT = f"callfleet/{__version__} (alerting)"
