"""Store URLs: a file, sqlite:, postgresql:; passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.store.url import Backend, parse


def test_paths_and_sqlite_urls_name_a_file() -> None:
    assert parse("j.sqlite").path == Path("j.sqlite")
    assert parse("sqlite:///abs/j.sqlite").path == Path("/abs/j.sqlite")
    assert parse(Path("/x/j.sqlite")).backend is Backend.SQLITE


def test_postgresql_urls_hide_the_password_and_use_psycopg() -> None:
    url = parse("postgres://cf:s3cret@db.example:5432/callfleet?sslmode=require")
    assert url.backend is Backend.POSTGRESQL
    assert "s3cret" not in url.display() and "db.example:5432/callfleet" in url.display()
    assert url.sqlalchemy_url().startswith("postgresql+psycopg://cf:s3cret@")


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not a store"):
        parse("mysql://x/y")
