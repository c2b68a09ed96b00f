"""`--limit SITE[,SITE]`: the sites a whole-estate command is narrowed to, checked against the estate."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import Estate


def parse_limit(estate: Estate, values: Iterable[str] | None) -> tuple[str, ...] | None:
    """The sites named by `--limit` values (each `SITE[,SITE]`), once each, in estate order; None
    when no value was given. An empty name or a site the estate does not have is InvalidInput
    (exit 2), naming it and the estate's sites, before anything is done."""
    given = list(values or ())
    if not given:
        return None
    known = [s.name for s in estate.sites]
    wanted: set[str] = set()
    for value in given:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                raise InvalidInput(f"--limit {value!r}: an empty site name (write SITE[,SITE])")
            if name not in known:
                raise InvalidInput(f"--limit: no site {name!r} in estate {estate.name} "
                                   f"(sites: {', '.join(known)})")
            wanted.add(name)
    return tuple(n for n in known if n in wanted)
