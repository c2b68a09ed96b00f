"""Load a rollout policy file: YAML validated by pydantic, one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.policy.rollout import RolloutPolicy

DEFAULT_POLICY = Path(__file__).resolve().parent.parent.parent / "policies" / "default.yml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML requires unique keys, PyYAML would silently
    keep the last one (a second `approvals:` would quietly replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class reports it with its position
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _key_text(part: object) -> str:
    """One part of a dotted key, quoted when it would not read as one plain word (newlines, dots, spaces)."""
    text = str(part)
    plain = text and text.isprintable() and not any(c.isspace() or c == "." for c in text)
    return text if plain else repr(text)


def policy_from_data(data: Any, path: Path) -> RolloutPolicy:
    """Validate an already parsed policy document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: (top): expected a mapping, got {type(data).__name__}")
    try:
        return RolloutPolicy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(_key_text(p) for p in err["loc"]) or "(top)"
        msg = " ".join(err["msg"].removeprefix("Value error, ").split())  # one line
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        raise InvalidInput(f"{path}: {key}: {msg}") from None


def load_policy(path: Path | None) -> RolloutPolicy:
    """The policy in `path`, or the default policy shipped in policies/default.yml."""
    path = path or DEFAULT_POLICY
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such policy file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    except OSError as exc:  # a directory, no permission, ...
        raise InvalidInput(f"{path}: cannot read the policy file ({exc.strerror or exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        detail = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        position = getattr(exc, "position", None)  # ReaderError: a character YAML does not allow
        where = f"line {mark.line + 1}" if mark else f"character {position}" if position is not None else "(top)"
        raise InvalidInput(f"{path}: {where}: not valid YAML ({detail})") from None
    except RecursionError:
        raise InvalidInput(f"{path}: (top): not valid YAML (nested too deeply)") from None
    except (ValueError, OverflowError) as exc:  # e.g. a timestamp such as 2026-13-45 10:00:00
        raise InvalidInput(f"{path}: (top): not valid YAML ({exc})") from None
    return policy_from_data(data, path)
