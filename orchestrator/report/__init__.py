"""The rollout report (issue 19, item 1): one run's journal as a typed model, and that model
as a self-contained HTML page.

- `model`: the report's typed shape (also the `report --json` document);
- `build`: journal events in, report out (pure);
- `sources`: reading the journal, the alert store and the policy (the only I/O);
- `charts`: the timeline and per-stage comparisons as inline SVG (matplotlib);
- `html`: the page (jinja2), inline CSS and SVG only.
"""
