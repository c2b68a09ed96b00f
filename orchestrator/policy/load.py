"""Load a rollout policy file: YAML validated by pydantic, one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.policy.rollout import RolloutPolicy
from orchestrator.resources import policies_dir
from orchestrator.userfile import key_text, load_yaml, refuse_non_finite

DEFAULT_POLICY = policies_dir() / "default.yml"


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
        key = ".".join(key_text(p) for p in err["loc"]) or "(top)"
        msg = " ".join(err["msg"].removeprefix("Value error, ").split())  # one line
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        raise InvalidInput(f"{path}: {key}: {msg}") from None


def load_policy(path: Path | None) -> RolloutPolicy:
    """The policy in `path`, or the default policy shipped in policies/default.yml."""
    path = path or DEFAULT_POLICY
    data = load_yaml(path, what="policy", finite=False)
    if data is None:
        # an empty, comment-only or /dev/null policy is a mistake, not a request for defaults
        raise InvalidInput(f"{path}: (top): the policy file is empty",
                           hint="omit --policy to use the default policy (policies/default.yml)")
    policy = policy_from_data(data, path)  # the model names unknown keys and ranges first
    refuse_non_finite(data, path)  # then any .inf/.nan a field would have let through
    return policy
