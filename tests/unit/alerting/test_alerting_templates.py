"""French and English texts carry the facts; the French SMS stays in GSM 03.38."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.alerting.channels.sms_encoding import GSM, UCS2, split_sms
from orchestrator.alerting.models import AlertKind
from orchestrator.alerting.templates import FORMS, format_number, render
from tests.unit.alerting.conftest import lyon


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_form_carries_the_facts(lang: str) -> None:
    m = render(alert=lyon(), language=lang)  # type: ignore[arg-type]
    for text in (m.sms, m.email, m.chat):
        for fact in ("112, 18", "lyon", "14:45 UTC", "5.8.1 -> 5.8.2", "04 72 00 00 00"):
            assert fact in text, (fact, text)
        assert "$" not in text
    assert "112, 18" in m.subject and "lyon" in m.subject
    assert "ser_112: 0.62" in m.email and "calls: 400" in m.email
    assert ("15 min" in m.email)  # raised 15 minutes after it started


def test_french_and_english_wording() -> None:
    fr = render(alert=lyon(), language="fr")
    en = render(alert=lyon(), language="en")
    assert fr.title == "[CRITIQUE] Vérification de santé en échec"
    assert "Ce qui a été fait : site drainé (plus d'appels en direct), retour à la version précédente" in fr.email
    assert "Numéros de substitution à publier : 04 72 00 00 00" in fr.email
    assert en.title == "[CRITICAL] Health gate failed"
    assert "What was done: site drained (no live calls), rolled back to the previous release" in en.email
    assert "Substitute numbers to publish: 04 72 00 00 00" in en.email


@pytest.mark.parametrize("kind", [k for k in AlertKind if k is not AlertKind.PSAP_NOTICE])
@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_kind_has_its_own_title_in_both_languages(kind: AlertKind, lang: str) -> None:
    title = render(alert=lyon(kind=kind.value), language=lang).title  # type: ignore[arg-type]
    others = {render(alert=lyon(kind=k.value), language=lang).title  # type: ignore[arg-type]
              for k in AlertKind if k not in (kind, AlertKind.PSAP_NOTICE)}
    assert title not in others and "_" not in title  # worded, never the raw kind


def test_the_fleet_guard_says_the_whole_fleet_goes_back() -> None:
    assert render(alert=lyon(kind="fleet_guard"), language="fr").title == \
        "[CRITIQUE] Site en échec après sa mise à jour, retour de toute la flotte"
    assert render(alert=lyon(kind="fleet_guard"), language="en").title == \
        "[CRITICAL] Upgraded site failing, the whole fleet goes back"


def test_times_in_the_audience_zone() -> None:
    m = render(alert=lyon(), language="fr", timezone="Europe/Paris")
    assert "16:45 CEST" in m.sms and "2021-06-02 16:45 CEST" in m.email


def test_empty_facts_read_naturally() -> None:
    m = render(alert=lyon(kind="test", severity="info", failing={}, actions=[], substitute_numbers=[], evidence={},
                          release={}), language="en")
    assert "The whole estate" in m.chat and "Done: nothing" in m.chat
    assert "Substitute" not in m.sms
    assert "Alert test, no action needed" in m.subject


def test_french_sms_fits_gsm_and_a_note_may_force_ucs2() -> None:
    sms = render(alert=lyon(), language="fr").sms
    assert split_sms(sms).data_coding == GSM
    with_note_in_sms = render(alert=lyon(failing={"sites": ["besançon"]}), language="fr").sms
    assert split_sms(with_note_in_sms).data_coding == UCS2


def test_override_templates_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "fr.sms.tmpl").write_text("ALERTE $failing depuis $since_short $unknown_placeholder", encoding="utf-8")
    m = render(alert=lyon(), language="fr", override_dir=tmp_path)
    assert m.sms == "ALERTE Appels vers le 112, 18 sur lyon depuis 02/06 14:45 UTC $unknown_placeholder"
    assert m.email == render(alert=lyon(), language="fr").email
    assert set(FORMS) == {"subject", "sms", "email", "chat"}


def test_format_number() -> None:
    assert format_number("0472000000") == "04 72 00 00 00"
