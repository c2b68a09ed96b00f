"""E-mail channel: one message per audience over SMTP (smtplib), STARTTLS optional."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from orchestrator.alerting.channels.base import ChannelError, Progress, SendContext
from orchestrator.alerting.config import SmtpChannel
from orchestrator.alerting.models import Alert
from orchestrator.alerting.templates import Message
from orchestrator.alerting.version import USER_AGENT


def build_email(*, alert: Alert, message: Message, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """The e-mail: subject and long text in the audience's language, incident headers."""
    msg = EmailMessage()
    msg["Subject"] = message.subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(alert.raised_at)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg["Content-Language"] = message.language
    msg["X-Callfleet-Incident"] = alert.incident_id
    msg["X-Callfleet-Dedupe-Key"] = alert.dedupe_key
    msg["X-Callfleet-Kind"] = alert.kind.value
    msg["X-Mailer"] = USER_AGENT
    if alert.severity.value == "critical":
        msg["Importance"] = "high"
        msg["X-Priority"] = "1"
    msg.set_content(message.email, charset="utf-8")
    return msg


class SmtpSender:
    """Sends one message to all the audience's addresses in one SMTP transaction."""

    type = "smtp"

    def __init__(self, *, name: str, settings: SmtpChannel, password: str | None) -> None:
        self.name = name
        self._settings = settings
        self._password = password

    def _tls_context(self) -> ssl.SSLContext:
        s = self._settings
        return ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)

    def send(self, *, alert: Alert, message: Message, targets: tuple[str, ...], ctx: SendContext,
             progress: Progress) -> None:
        """One SMTP session; 4xx answers and network errors are retried, 5xx are not."""
        s = self._settings
        pending = tuple(t for t in targets if t not in progress.done)
        if not pending:
            return
        email = build_email(alert=alert, message=message, sender=s.from_addr, recipients=targets)
        where = f"smtp {s.host}:{s.port}"
        try:
            with smtplib.SMTP(s.host, s.port, timeout=ctx.op_timeout()) as smtp:
                smtp.ehlo()
                if s.starttls:
                    smtp.starttls(context=self._tls_context())
                    smtp.ehlo()
                if s.username:
                    smtp.login(s.username, self._password or "")
                refused = smtp.send_message(email, from_addr=s.from_addr, to_addrs=list(pending))
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError(f"{where}: login refused ({exc.smtp_code})", permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {addr: code for addr, (code, _msg) in exc.recipients.items()}
            permanent = all(code >= 500 for code in codes.values())
            raise ChannelError(f"{where}: every recipient refused {codes}", permanent=permanent) from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise ChannelError(f"{where}: {exc.smtp_code} {text[:200]}",
                               permanent=exc.smtp_code >= 500) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ChannelError(f"{where}: {exc}", permanent=True) from None
        except ssl.SSLError as exc:
            raise ChannelError(f"{where}: TLS: {exc.reason or exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"{where}: {type(exc).__name__}: {exc}") from None
        for addr, (code, _msg) in refused.items():
            progress.rejected[addr] = str(code)
        progress.done.update(t for t in pending if t not in refused)
        progress.detail["message_id"] = email["Message-ID"]
        if refused:
            progress.detail["refused"] = sorted(refused)
