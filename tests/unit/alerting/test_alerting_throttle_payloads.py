"""Pacing to the SMSC's rate (fake clock) and webhook payload shapes."""

from __future__ import annotations

from orchestrator.alerting.channels.payloads import plain_json, slack, teams, teams_messagecard
from orchestrator.alerting.templates import render
from orchestrator.alerting.throttle import RateLimiter
from tests.unit.alerting.conftest import lyon


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_rate_limiter_spaces_events() -> None:
    ft = FakeTime()
    rl = RateLimiter(rate=4, clock=ft.clock, sleep=ft.sleep)
    for _ in range(5):
        assert rl.acquire()
    assert ft.slept == [0.25, 0.25, 0.25, 0.25]
    assert not rl.acquire(deadline=ft.t)  # the next slot is after the deadline: refused, not taken
    assert rl.acquire()


def test_slack_payload() -> None:
    a = lyon()
    p = slack(alert=a, message=render(alert=a, language="fr"))
    assert p["text"].startswith("[CRITIQUE] Vérification de santé en échec")
    kinds = [b["type"] for b in p["blocks"]]
    assert kinds[0] == "header" and kinds[-1] == "context"
    fields = [f["text"] for b in p["blocks"] if "fields" in b for f in b["fields"]]
    assert all(len(b.get("fields", [])) <= 10 for b in p["blocks"])
    assert any("04 72 00 00 00" in f for f in fields)


def test_teams_payloads() -> None:
    a = lyon()
    m = render(alert=a, language="en")
    card = teams(alert=a, message=m)["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    facts = card["content"]["body"][2]["facts"]
    assert {"title": "Substitute numbers to publish", "value": "04 72 00 00 00"} in facts
    legacy = teams_messagecard(alert=a, message=m)
    assert legacy["@type"] == "MessageCard" and legacy["themeColor"] == "D70000"


def test_plain_json_carries_the_alert() -> None:
    a = lyon()
    p = plain_json(alert=a, message=render(alert=a, language="en"))
    assert p["alert"]["failing"] == {"numbers": ["112", "18"], "sites": ["lyon"]}
    assert p["alert"]["release"] == {"from": "5.8.1", "to": "5.8.2"}
