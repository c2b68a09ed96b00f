"""Release variants for the tests: the builders live in orchestrator/lab/variants.py."""

from orchestrator.lab.variants import (
    added_delay,
    breaks_after_reconnect,
    breaks_number,
    counter_cap,
    dies_at_start,
    edit,
    leaks_memory,
    make_release,
    random_503,
    rejects_after,
    syntax_error,
)

__all__ = ["added_delay", "breaks_after_reconnect", "breaks_number", "counter_cap", "dies_at_start", "edit",
           "leaks_memory", "make_release", "random_503", "rejects_after", "syntax_error"]
