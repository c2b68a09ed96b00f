"""callfleet: canary-first, health-gated upgrades of an emergency-call estate."""

__version__ = "0.1.0"
