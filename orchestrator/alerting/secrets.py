"""Channel credentials: from the environment or a secrets file, referenced by name.

The config file names a secret (`password_secret: SMTP_PASSWORD`); its value comes from
the environment variable of that name, else from a `KEY=VALUE` secrets file whose path
the config gives. Values are held as pydantic SecretStr, so repr() and JSON dumps show
stars, and `Redactor` scrubs them from any error text before it is logged or stored.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import SecretStr

from orchestrator.errors import InvalidInput

REDACTED = "***"


def check_secrets_file(path: Path) -> None:
    """A secrets file must be a regular file owned by the user running callfleet, that group
    and others may neither read nor write (0600 or 0400); InvalidInput otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such secrets file") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{path}: the secrets file is not a regular file")
    if st.st_uid != os.getuid():
        raise InvalidInput(f"{path}: the secrets file belongs to uid {st.st_uid}, not to the user running "
                           f"callfleet (uid {os.getuid()})", hint=f"chown {os.getuid()} {path}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"{path}: secrets file is readable by group or others (mode {stat.S_IMODE(st.st_mode):o})",
                           hint=f"chmod 600 {path}")


def read_secrets_file(path: Path) -> dict[str, SecretStr]:
    """Parse a `KEY=VALUE` secrets file (comments with #, blank lines allowed), checked first."""
    check_secrets_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: the secrets file is not UTF-8 text") from None
    secrets: dict[str, SecretStr] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            # Never echo the line: it may hold a secret.
            raise InvalidInput(f"{path}: line {lineno}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        secrets[key] = SecretStr(value)
    return secrets


def resolve_secrets(*, names: Iterable[str], env: Mapping[str, str] | None = None,
                    secrets_file: Path | None = None) -> tuple[dict[str, SecretStr], list[str]]:
    """Look each name up in the environment, then in the secrets file.

    Returns the values found and the names that were not found anywhere."""
    environ = os.environ if env is None else env
    found = {name: SecretStr(environ[name]) for name in sorted(set(names)) if environ.get(name)}
    missing = sorted(set(names) - found.keys())
    # A file the config names is checked whenever it exists (a world-readable secrets file
    # is a leak even when the environment happens to hold every value); it is read only
    # when the environment lacks something.
    if secrets_file is not None and (secrets_file.exists() or missing):
        check_secrets_file(secrets_file)
    if missing and secrets_file is not None:
        from_file = read_secrets_file(secrets_file)
        found.update({name: from_file[name] for name in missing if name in from_file})
        missing = [name for name in missing if name not in from_file]
    return found, missing


class Redactor:
    """Replaces every known secret value in a text with ***."""

    def __init__(self, *, secrets: Iterable[SecretStr]) -> None:
        # Longest first, so a secret that contains another is scrubbed whole.
        self._values = sorted({s.get_secret_value() for s in secrets if s.get_secret_value()}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """The text with every secret value replaced."""
        for value in self._values:
            text = text.replace(value, REDACTED)
        return text


class RedactingFilter(logging.Filter):
    """Scrubs secret values from a record's message and from its traceback: the exception
    text is formatted here, redacted, and kept as the record's exc_text."""

    _formatter = logging.Formatter()

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record, secrets replaced."""
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        record.msg, record.args = self._redact(text), None
        if record.exc_info:
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:  # formatted here or by an earlier filter that knew other secrets
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True


class WireDumpFilter(logging.Filter):
    """Drops third-party wire dumps (smpplib logs every PDU in hex at DEBUG, bind
    password included) and scrubs secret values from any other record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """False for hex dumps; other records are kept with secrets replaced."""
        msg = str(record.msg)
        if msg.startswith((">>", "<<")):
            return False
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            return False
        redacted = self._redact(text)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True
