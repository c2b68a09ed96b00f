"""Load a rollout policy file: YAML validated by pydantic, one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.policy.rollout import RolloutPolicy

DEFAULT_POLICY = Path(__file__).resolve().parent.parent.parent / "policies" / "default.yml"


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
        key = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = err["msg"].removeprefix("Value error, ")
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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise InvalidInput(f"{path}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return policy_from_data(data, path)
