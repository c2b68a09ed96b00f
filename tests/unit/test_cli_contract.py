"""The CLI's options read the same everywhere: one short option, one meaning."""

from __future__ import annotations

from typing import Any

import typer

from orchestrator.cli.main import app


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found = [(prefix, group)]
    if hasattr(group, "commands"):  # typer's own click types: duck-typed
        for name, sub in group.commands.items():
            found += _commands(sub, f"{prefix} {name}".strip())
    return found


def test_a_short_option_means_one_long_option_across_every_command() -> None:
    meaning: dict[str, tuple[str, str]] = {}
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option":
                continue
            shorts = [o for o in param.opts + param.secondary_opts if len(o) == 2 and o.startswith("-")]
            longs = [o for o in param.opts if o.startswith("--")]
            for short in shorts:
                seen = meaning.setdefault(short, (longs[0] if longs else short, path))
                assert seen[0] == (longs[0] if longs else short), (
                    f"{short} means {seen[0]} in `{seen[1]}` but {longs} in `{path}`")
    assert meaning["-i"][0] == "--inventory"


def test_limit_always_means_sites() -> None:
    """`--limit SITE[,SITE]` narrows a whole-estate command; no visible option spells it otherwise."""
    having = set()
    for path, command in _commands(typer.main.get_command(app)):
        for param in getattr(command, "params", []):
            if "--limit" in getattr(param, "opts", ()) and not getattr(param, "hidden", False):
                assert param.metavar == "SITE[,SITE]", f"`{path}` has a --limit that is not SITE[,SITE]"
                having.add(path)
    assert {"plan", "upgrade"} <= having
