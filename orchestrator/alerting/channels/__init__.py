"""Channel adapters (webhook, SMTP, SMPP) and their construction from the config."""

from __future__ import annotations

from orchestrator.alerting.channels.base import Channel, ChannelError, Progress, SendContext
from orchestrator.alerting.channels.email import SmtpSender
from orchestrator.alerting.channels.smpp import SmppSender
from orchestrator.alerting.channels.webhook import WebhookSender
from orchestrator.alerting.config import AlertConfig, SmppChannel, SmtpChannel, WebhookChannel
from orchestrator.alerting.secrets import Redactor

__all__ = ["Channel", "ChannelError", "Progress", "SendContext", "build_channels"]


def build_channels(*, config: AlertConfig, redactor: Redactor) -> dict[str, Channel]:
    """One adapter per configured channel, holding its secret (never logged)."""
    out: dict[str, Channel] = {}
    for name, ch in config.channels.items():
        if isinstance(ch, WebhookChannel):
            out[name] = WebhookSender(name=name, settings=ch, token=config.secret(ch.token_secret))
        elif isinstance(ch, SmtpChannel):
            out[name] = SmtpSender(name=name, settings=ch, password=config.secret(ch.password_secret))
        elif isinstance(ch, SmppChannel):
            out[name] = SmppSender(name=name, settings=ch, password=config.secret(ch.password_secret),
                                   redactor=redactor)
    return out
