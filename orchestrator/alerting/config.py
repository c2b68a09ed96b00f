"""Alerting config: channels, audiences and thresholds, from one YAML file.

    version: 1
    store: alerts.sqlite            # relative to this file; default $CALLFLEET_ALERTS_DB or ~/.local/state
    secrets_file: alerts.secrets    # KEY=VALUE, mode 0600; the environment wins over it
    dedupe_window_s: 900
    retry: {attempts: 3, backoff_s: 1, max_backoff_s: 30, timeout_s: 10, deadline_s: 60}
    channels:
      ops-chat: {type: webhook, url: "http://127.0.0.1:8080/hook", format: slack, token_secret: CHAT_TOKEN}
      mail: {type: smtp, host: 127.0.0.1, port: 8025, starttls: false, from: callfleet@example.org,
             username: callfleet, password_secret: SMTP_PASSWORD}
      sms: {type: smpp, host: 127.0.0.1, port: 2775, system_id: callfleet, password_secret: SMPP_PASSWORD,
            source_addr: CALLFLEET, throughput: 10, max_retries: 3}
    audiences:
      crisis_cell: {language: fr, min_severity: warning, webhooks: [ops-chat], email: [...], sms: [...]}

Secrets are never written here, only their names. Errors name the file and the dotted key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError

from orchestrator.alerting.models import Alert, AlertKind, Severity
from orchestrator.alerting.secrets import resolve_secrets
from orchestrator.errors import InvalidInput
from orchestrator.userfile import load_yaml

ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
EmailAddress = Annotated[str, StringConstraints(pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")]
PhoneNumber = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{6,15}$")]
HostName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.:_-]{1,253}$")]
Port = Annotated[int, Field(ge=1, le=65535)]
AudienceName = Literal["crisis_cell", "authorities", "psaps", "partner_operators", "on_call"]
AUDIENCES: tuple[str, ...] = ("crisis_cell", "authorities", "psaps", "partner_operators", "on_call")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetryPolicy(_Frozen):
    """At least once, never forever: bounded attempts and a bounded total time."""

    attempts: int = Field(default=3, ge=1, le=20, description="tries per delivery, the first included")
    backoff_s: float = Field(default=1.0, gt=0, le=300, description="wait before the 2nd try; doubles after")
    max_backoff_s: float = Field(default=30.0, gt=0, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="one try (connect, each socket read)")
    deadline_s: float = Field(default=60.0, gt=0, le=3600, description="the whole delivery, retries included")

    def backoff(self, attempt: int) -> float:
        """Wait after failed try number `attempt` (1-based): exponential, capped."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))


class WebhookChannel(_Frozen):
    """POST of a JSON payload (Slack blocks, Teams card or callfleet's own JSON).

    The token goes in `token_header` (as `Bearer <token>` for Authorization), or into the
    URL where it says `{token}` (Slack and Teams put theirs in the URL path)."""

    type: Literal["webhook"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")]
    format: Literal["slack", "teams", "teams_messagecard", "json"] = "json"
    token_secret: SecretName | None = None
    token_header: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")] = "Authorization"
    retry: RetryPolicy | None = None


class SmtpChannel(_Frozen):
    """E-mail through an SMTP relay, STARTTLS optional."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    type: Literal["smtp"]
    host: HostName
    port: Port = 25
    starttls: bool = False
    ca_file: Path | None = Field(default=None, description="CA bundle for STARTTLS (default: system store)")
    from_addr: EmailAddress = Field(alias="from")
    username: str | None = None
    password_secret: SecretName | None = None
    retry: RetryPolicy | None = None


class SmppChannel(_Frozen):
    """Mass SMS through an SMSC over SMPP 3.4."""

    type: Literal["smpp"]
    host: HostName
    port: Port = 2775
    system_id: Annotated[str, StringConstraints(min_length=1, max_length=15)]
    system_type: Annotated[str, StringConstraints(max_length=12)] = ""
    password_secret: SecretName | None = None
    source_addr: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    bind: Literal["transmitter", "transceiver"] = Field(
        default="transmitter", description="transceiver also receives the delivery receipts on the same session")
    throughput: float = Field(default=10.0, gt=0, le=10000, description="submit_sm per second the SMSC accepts")
    max_retries: int = Field(default=3, ge=0, le=20, description="retries of one submit_sm the SMSC throttled")
    receipt_wait_s: float = Field(default=0.0, ge=0, le=300,
                                  description="with bind: transceiver, how long to wait for delivery receipts")
    retry: RetryPolicy | None = None


Channel = Annotated[WebhookChannel | SmtpChannel | SmppChannel, Field(discriminator="type")]


class Audience(_Frozen):
    """Who is told, on which channels, in which language, from which severity on."""

    language: Literal["fr", "en"] = "fr"
    timezone: str = Field(default="UTC", description="times in messages are shown in this zone")
    min_severity: Severity = Severity.WARNING
    kinds: tuple[AlertKind, ...] | None = Field(default=None, description="only these kinds (default: all)")
    webhooks: tuple[ChannelName, ...] = ()
    email: tuple[EmailAddress, ...] = ()
    email_channel: ChannelName | None = None
    sms: tuple[PhoneNumber, ...] = ()
    sms_channel: ChannelName | None = None

    def wants(self, alert: Alert) -> bool:
        """Whether this audience is concerned (a test alert reaches everyone).

        A resolution ignores min_severity: whoever heard of an incident must hear it ended,
        even when the producer marks the resolution `info`."""
        if alert.kind is AlertKind.TEST:
            return True
        if self.kinds is not None and alert.kind not in self.kinds:
            return False
        return alert.kind is AlertKind.INCIDENT_RESOLVED or alert.severity.rank >= self.min_severity.rank


class PsapContent(_Frozen):
    """What a PSAP notice says of its sender: provider, contact, and the area each site serves.

    Absent values are said to be absent in the notice, never invented."""

    provider: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="the operator's name as the answering points know it")
    contact: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="who the answering points call or write to (a desk, a number, an address)")
    areas: dict[str, Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        default_factory=dict, description="site name -> the area whose calls it routes")


class AlertConfig(_Frozen):
    """The validated alerting config. `secrets` is filled by `load_config`, never from
    the file, and is excluded from dumps and repr."""

    version: Literal[1] = 1
    store: Path | None = None
    secrets_file: Path | None = None
    templates_dir: Path | None = None
    dedupe_window_s: float = Field(default=900.0, ge=0, le=7 * 86400)
    retry: RetryPolicy = RetryPolicy()
    channels: dict[ChannelName, Channel] = Field(min_length=1)
    audiences: dict[AudienceName, Audience] = Field(min_length=1)
    psap: PsapContent = PsapContent()
    secrets: dict[str, SecretStr] = Field(default_factory=dict, exclude=True, repr=False)

    def retry_for(self, channel: str) -> RetryPolicy:
        """The channel's own retry policy, else the file's."""
        return self.channels[channel].retry or self.retry

    def secret(self, name: str | None) -> str | None:
        """The value of a named secret (only adapters call this, at send time)."""
        return None if name is None else self.secrets[name].get_secret_value()

    def routes(self, alert: Alert, *, only_channel: str | None = None) -> list[Route]:
        """Every (audience, channel, targets) this alert goes to."""
        out: list[Route] = []
        for name, aud in self.audiences.items():
            # A PSAP notice is for the answering points only, whatever their filters say.
            if alert.kind is AlertKind.PSAP_NOTICE and name != "psaps":
                continue
            if alert.kind is not AlertKind.PSAP_NOTICE and not aud.wants(alert):
                continue
            for hook in aud.webhooks:
                channel = self.channels[hook]
                url = channel.url if isinstance(channel, WebhookChannel) else hook
                out.append(Route(audience=name, channel=hook, targets=(url,)))
            if aud.email:
                out.append(Route(audience=name, channel=_pick(self, aud.email_channel, "smtp"), targets=aud.email))
            if aud.sms:
                out.append(Route(audience=name, channel=_pick(self, aud.sms_channel, "smpp"), targets=aud.sms))
        return [r for r in out if only_channel is None or r.channel == only_channel]


@dataclass(frozen=True)
class Route:
    """One delivery: an audience on a channel, with that audience's addresses."""

    audience: str
    channel: str
    targets: tuple[str, ...]


def _pick(config: AlertConfig, named: str | None, ctype: str) -> str:
    if named is not None:
        return named
    return next(n for n, c in config.channels.items() if c.type == ctype)


def default_store_path() -> Path:
    """$CALLFLEET_ALERTS_DB, else $XDG_STATE_HOME/callfleet/alerts.sqlite (~/.local/state)."""
    env = os.environ.get("CALLFLEET_ALERTS_DB")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "callfleet" / "alerts.sqlite"


def store_path(config: AlertConfig) -> Path:
    """Where this config's notifications are recorded."""
    return config.store if config.store is not None else default_store_path()


def _fail(path: Path, key: str, message: str, hint: str | None = None) -> InvalidInput:
    return InvalidInput(f"{path}: {key}: {message}", hint=hint)


def _secret_refs(config: AlertConfig) -> dict[str, str]:
    refs: dict[str, str] = {}
    for name, ch in config.channels.items():
        ref = ch.token_secret if isinstance(ch, WebhookChannel) else ch.password_secret
        if ref is not None:
            refs[ref] = f"channels.{name}.{'token_secret' if isinstance(ch, WebhookChannel) else 'password_secret'}"
    return refs


def _check_references(path: Path, config: AlertConfig) -> None:
    by_type: dict[str, list[str]] = {}
    for name, ch in config.channels.items():
        by_type.setdefault(ch.type, []).append(name)
    for aname, aud in config.audiences.items():
        key = f"audiences.{aname}"
        if not (aud.webhooks or aud.email or aud.sms):
            raise _fail(path, key, "no webhook, e-mail address or phone number: this audience would hear nothing")
        try:
            ZoneInfo(aud.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
            raise _fail(path, f"{key}.timezone", f"unknown time zone {aud.timezone[:64]!r}") from None
        for i, hook in enumerate(aud.webhooks):
            if hook not in config.channels:
                raise _fail(path, f"{key}.webhooks.{i}", f"no channel named {hook!r}")
            if config.channels[hook].type != "webhook":
                raise _fail(path, f"{key}.webhooks.{i}", f"channel {hook!r} is not a webhook")
        for field, targets, named, ctype in (("email", aud.email, aud.email_channel, "smtp"),
                                             ("sms", aud.sms, aud.sms_channel, "smpp")):
            if named is not None:
                if named not in config.channels:
                    raise _fail(path, f"{key}.{field}_channel", f"no channel named {named!r}")
                if config.channels[named].type != ctype:
                    raise _fail(path, f"{key}.{field}_channel", f"channel {named!r} is not of type {ctype}")
            elif targets and len(by_type.get(ctype, [])) != 1:
                n = len(by_type.get(ctype, []))
                raise _fail(path, f"{key}.{field}", f"needs one {ctype} channel, the file has {n}"
                            + (f" (name it with {field}_channel)" if n > 1 else ""))
    for name, ch in config.channels.items():
        if isinstance(ch, SmppChannel) and ch.receipt_wait_s > 0 and ch.bind != "transceiver":
            raise _fail(path, f"channels.{name}.receipt_wait_s",
                        "delivery receipts come back only on a transceiver (or receiver) bind: set bind: transceiver")


_INLINE_SECRET_KEYS = ("password", "token", "secret", "secrets")


def _reject_inline_secrets(path: Path, raw: dict[str, Any]) -> None:
    if "secrets" in raw:
        raise _fail(path, "secrets", "secret values are never written in this file",
                    hint="reference them by name (password_secret: NAME) and put them in the environment "
                         "or the secrets file")
    channels = raw.get("channels")
    if not isinstance(channels, dict):
        return  # not a mapping: the model's validation names it
    for name, ch in channels.items():
        if isinstance(ch, dict):
            for k in _INLINE_SECRET_KEYS:
                if k in ch:
                    raise _fail(path, f"channels.{name}.{k}", "secret values are never written in this file",
                                hint=f"use {'token' if k == 'token' else 'password'}_secret: NAME and set NAME "
                                     "in the environment or the secrets file")


def _dotted(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p != "[key]"]
    # A discriminated union puts the tag in the path (channels.mail.smtp.port): drop it.
    if len(parts) > 2 and parts[0] == "channels" and parts[2] in ("webhook", "smtp", "smpp"):
        del parts[2]
    return ".".join(parts) or "(top)"


def parse_config(raw: Any, *, path: Path, env: dict[str, str] | None = None, with_secrets: bool = True) -> AlertConfig:
    """Validate an already parsed document and resolve its secrets (InvalidInput on error).

    `with_secrets=False` skips the secrets (for commands that only read the store)."""
    if not isinstance(raw, dict):
        raise _fail(path, "(top)", f"expected a mapping, got {type(raw).__name__}")
    _reject_inline_secrets(path, raw)
    try:
        config = AlertConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _dotted(err["loc"])
        msg = "unknown key (typo?)" if err["type"] == "extra_forbidden" else err["msg"]
        raise _fail(path, loc, msg) from None
    _check_references(path, config)
    base = path.parent
    updates: dict[str, Any] = {}
    for field in ("store", "secrets_file", "templates_dir"):
        value = getattr(config, field)
        if value is not None and not value.is_absolute():
            updates[field] = base / value
    config = config.model_copy(update=updates)
    if not with_secrets:
        return config
    refs = _secret_refs(config)
    found, missing = resolve_secrets(names=refs, env=env, secrets_file=config.secrets_file)
    if missing:
        name = missing[0]
        where = f"the environment or {config.secrets_file}" if config.secrets_file else "the environment"
        raise _fail(path, refs[name], f"secret {name} is not set in {where}")
    _check_secret_values(path, config, found, refs)
    return config.model_copy(update={"secrets": found})


def _check_secret_values(path: Path, config: AlertConfig, found: dict[str, SecretStr], refs: dict[str, str]) -> None:
    """Values a channel cannot carry are refused here, by name, before any send: they would
    fail mid-delivery with an exception whose text may hold the value itself."""
    for ch in config.channels.values():
        ref = ch.token_secret if isinstance(ch, WebhookChannel) else ch.password_secret
        if ref is None or ref not in found:
            continue
        value = found[ref].get_secret_value()
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise _fail(path, refs[ref], f"secret {ref} contains a control character (a line break?)")
        if isinstance(ch, WebhookChannel) and "{token}" not in ch.url:
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise _fail(path, refs[ref], f"secret {ref} cannot travel in an HTTP header (non-latin-1 "
                                              "characters); put `{token}` in the URL instead") from None
        if isinstance(ch, SmtpChannel) and not value.isascii():
            raise _fail(path, refs[ref], f"secret {ref}: SMTP AUTH takes ASCII passwords only")


def load_config(path: Path, *, env: dict[str, str] | None = None, with_secrets: bool = True) -> AlertConfig:
    """Load, validate and resolve an alerting config file (InvalidInput naming file and key)."""
    if not path.exists() and not path.is_symlink():
        raise InvalidInput(f"{path}: no such alerting config file",
                           hint="copy policies/alerts.example.yml, or set $CALLFLEET_ALERTS")
    raw = load_yaml(path, what="alerting config")
    return parse_config(raw, path=path, env=env, with_secrets=with_secrets)


def default_config_path() -> Path:
    """$CALLFLEET_ALERTS, else policies/alerts.yml."""
    return Path(os.environ.get("CALLFLEET_ALERTS") or "policies/alerts.yml")
