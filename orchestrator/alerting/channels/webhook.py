"""Webhook channel: one JSON POST per try with urllib (stdlib), a timeout, no redirects."""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from email.message import Message as HttpHeaders
from typing import Any
from urllib.parse import quote, urlsplit

from orchestrator.alerting.channels.base import ChannelError, Progress, SendContext
from orchestrator.alerting.channels.payloads import BUILDERS
from orchestrator.alerting.config import WebhookChannel
from orchestrator.alerting.models import Alert
from orchestrator.alerting.templates import Message
from orchestrator.alerting.version import USER_AGENT

# 408 and 429 and every 5xx are worth another try; other 4xx mean the request is wrong.
_RETRIABLE = {408, 425, 429}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A webhook that redirects is misconfigured; following it would turn the POST into a GET.
    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: HttpHeaders, newurl: str) -> None:
        return None


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and (host == "localhost" or ipaddress.ip_address(host).is_loopback)
    except ValueError:
        return False


class WebhookSender:
    """POSTs the payload of its format (slack, teams, teams_messagecard, json)."""

    type = "webhook"

    def __init__(self, *, name: str, settings: WebhookChannel, token: str | None) -> None:
        self.name = name
        self._settings = settings
        self._token = token
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if _is_loopback(urlsplit(settings.url).hostname):
            # A proxy from the environment must not capture loopback receivers.
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def _request(self, body: bytes) -> urllib.request.Request:
        url = self._settings.url
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        if self._token is not None:
            if "{token}" in url:
                # encoded: a token is data, never URL syntax (a space, `/`, `?` or `#` in it)
                url = url.replace("{token}", quote(self._token, safe=""))
            else:
                value = f"Bearer {self._token}" if self._settings.token_header.lower() == "authorization" \
                    else self._token
                headers[self._settings.token_header] = value
        return urllib.request.Request(url, data=body, headers=headers, method="POST")

    def send(self, *, alert: Alert, message: Message, targets: tuple[str, ...], ctx: SendContext,
             progress: Progress) -> None:
        """One POST; 2xx is sent, 408/425/429/5xx and network errors are retried, other answers are not."""
        payload = BUILDERS[self._settings.format](alert=alert, message=message)
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        # Errors name the configured URL (with its {token} placeholder), never the real one.
        where = self._settings.url
        try:
            with self._opener.open(self._request(body), timeout=ctx.op_timeout()) as resp:
                status = resp.status
                resp.read(4096)
        except urllib.error.HTTPError as exc:
            status = exc.code
            permanent = status < 500 and status not in _RETRIABLE
            raise ChannelError(f"{where}: HTTP {status} {exc.reason}", permanent=permanent) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ChannelError(f"{where}: {type(reason).__name__}: {reason}") from None
        if not 200 <= status < 300:
            raise ChannelError(f"{where}: HTTP {status}", permanent=status < 500 and status not in _RETRIABLE)
        progress.done.update(targets)
        progress.detail["http_status"] = status
