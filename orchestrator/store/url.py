"""Which store a `--journal` value (or $CALLFLEET_JOURNAL) names."""

from __future__ import annotations

import enum
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput


class Backend(enum.StrEnum):
    """The two backends."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class StoreURL(BaseModel):
    """A parsed store location: a SQLite file, or a PostgreSQL connection URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    backend: Backend
    path: Path | None = None  # SQLite
    dsn: str | None = None  # PostgreSQL, as given (libpq URL)

    def sqlalchemy_url(self) -> str:
        """The URL SQLAlchemy connects with (psycopg 3 as PostgreSQL's driver)."""
        if self.backend is Backend.SQLITE:
            return f"sqlite:///{self.file}"
        parts = urlsplit(self.dsn or "")
        return urlunsplit(("postgresql+psycopg", *parts[1:]))

    @property
    def file(self) -> Path:
        """The SQLite file (a PostgreSQL store has none)."""
        if self.path is None:
            raise ValueError("a PostgreSQL store has no file")
        return self.path

    def display(self) -> str:
        """For messages: the file, or the URL without its password."""
        if self.backend is Backend.SQLITE:
            return str(self.path)
        parts = urlsplit(self.dsn or "")
        netloc = parts.netloc
        if "@" in netloc:
            user, host = netloc.rsplit("@", 1)
            netloc = f"{user.split(':', 1)[0]}:***@{host}" if ":" in user else netloc
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def key(self) -> str:
        """A stable name for registries (an absolute file, or the password-free URL)."""
        return str(self.file.absolute()) if self.backend is Backend.SQLITE else self.display()


def parse(value: str | Path) -> StoreURL:
    """`sqlite:///abs/path`, `sqlite:rel/path`, `postgresql://...` (or `postgres://`), else a file path."""
    text = str(value)
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        rest = text.split("://", 1)[1]
        return StoreURL(backend=Backend.POSTGRESQL, dsn=f"postgresql://{rest}")
    if text.startswith("sqlite:"):
        rest = text.removeprefix("sqlite:")
        rest = rest[2:] if rest.startswith("//") else rest  # sqlite:///abs -> /abs
        if not rest:
            raise InvalidInput(f"{text}: a sqlite: URL needs a file (sqlite:///path/journal.sqlite)")
        return StoreURL(backend=Backend.SQLITE, path=Path(rest))
    if "://" in text:
        raise InvalidInput(f"{text}: not a store this version knows (sqlite:///FILE or postgresql://...)")
    return StoreURL(backend=Backend.SQLITE, path=Path(text))
