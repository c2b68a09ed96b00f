"""Webhook bodies: Slack (text + blocks), Teams (Adaptive Card; legacy MessageCard), JSON."""

from __future__ import annotations

from typing import Any

from orchestrator.alerting.models import Alert, Severity
from orchestrator.alerting.templates import Message

_COLOURS = {Severity.INFO: "2E77D0", Severity.WARNING: "E8A317", Severity.CRITICAL: "D70000"}
_ADAPTIVE_STYLE = {Severity.INFO: "accent", Severity.WARNING: "warning", Severity.CRITICAL: "attention"}


def slack(*, alert: Alert, message: Message) -> dict[str, Any]:
    """Slack incoming-webhook payload: `text` is the notification fallback, blocks the card."""
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in message.facts]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": message.chat[:3000]}},
    ]
    # Slack allows at most 10 fields per section.
    for i in range(0, len(fields), 10):
        blocks.append({"type": "section", "fields": fields[i:i + 10]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"callfleet · {alert.dedupe_key}"}]})
    return {"text": message.chat, "blocks": blocks}


def teams(*, alert: Alert, message: Message) -> dict[str, Any]:
    """Teams (Workflows webhook) message carrying an Adaptive Card."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": True,
             "color": _ADAPTIVE_STYLE[alert.severity]},
            {"type": "TextBlock", "text": message.chat, "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.facts]},
        ],
    }
    return {"type": "message", "summary": message.subject,
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                             "content": card}]}


def teams_messagecard(*, alert: Alert, message: Message) -> dict[str, Any]:
    """Legacy Office 365 connector MessageCard."""
    return {"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": message.subject,
            "themeColor": _COLOURS[alert.severity], "title": message.title,
            "sections": [{"text": message.chat.replace("\n", "<br>"),
                          "facts": [{"name": k, "value": v} for k, v in message.facts]}]}


def plain_json(*, alert: Alert, message: Message) -> dict[str, Any]:
    """callfleet's own JSON: the alert's facts and the rendered texts."""
    return {"source": "callfleet", "alert": alert.model_dump(mode="json", by_alias=True),
            "language": message.language, "title": message.title, "subject": message.subject,
            "text": message.chat, "sms": message.sms}


BUILDERS = {"slack": slack, "teams": teams, "teams_messagecard": teams_messagecard, "json": plain_json}
