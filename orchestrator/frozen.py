"""The base of the typed models that never change once built: frozen, unknown fields refused.

New modules use this one; the older per-module copies (estate, plan, watch, report, alerting,
provision) have the same two settings and can move here as they are touched."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Immutable, and `extra="forbid"`: a misspelt field is an error, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")
