"""Rollout policies: YAML validated by pydantic, errors naming file and key."""
