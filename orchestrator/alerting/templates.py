"""French and English message templates: the facts of an alert as SMS, e-mail and chat text.

Templates are `string.Template` texts (stdlib, no logic inside): the facts are turned
into ready-made phrases here, per language, and the templates only place them. A config
may override any template with a file `<templates_dir>/<lang>.<form>.tmpl` (forms:
subject, sms, email, chat); unknown placeholders are left as they are, so a bad
override never stops an alert.

The French SMS wording stays inside the GSM 03.38 alphabet (é è à ù are in it; ê ç ô
are not), so a French SMS costs 153 characters a part instead of 67 in UCS-2; text
from the alert itself (a note, a site name) may still force UCS-2, and the SMS channel
then switches encoding on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Template
from typing import Literal
from zoneinfo import ZoneInfo

from orchestrator.alerting.config import PsapContent
from orchestrator.alerting.models import Action, Alert, AlertKind, Figure, Severity
from orchestrator.alerting.psap import NoticeKind

Language = Literal["fr", "en"]
FORMS = ("subject", "sms", "email", "chat")

_KINDS: dict[str, dict[AlertKind, str]] = {
    "fr": {
        AlertKind.GATE_FAILED: "Vérification de santé en échec",
        AlertKind.ROLLED_BACK: "Retour à la version précédente",
        AlertKind.INCONCLUSIVE_PAUSE: "Déploiement en pause, vérification non concluante",
        AlertKind.ROLLOUT_STUCK: "Déploiement bloqué",
        AlertKind.FLEET_GUARD: "Site en échec après sa mise à jour, retour de toute la flotte",
        AlertKind.INCIDENT_OPENED: "Incident ouvert",
        AlertKind.INCIDENT_UPDATED: "Incident mis à jour",
        AlertKind.INCIDENT_RESOLVED: "Incident résolu",
        AlertKind.PSAP_NOTICE: "Avis aux centres de traitement des appels d'urgence",
        AlertKind.TEST: "Test d'alerte, aucune action requise",
    },
    "en": {
        AlertKind.GATE_FAILED: "Health gate failed",
        AlertKind.ROLLED_BACK: "Rolled back to the previous release",
        AlertKind.INCONCLUSIVE_PAUSE: "Rollout paused, inconclusive gate",
        AlertKind.ROLLOUT_STUCK: "Rollout stuck",
        AlertKind.FLEET_GUARD: "Upgraded site failing, the whole fleet goes back",
        AlertKind.INCIDENT_OPENED: "Incident opened",
        AlertKind.INCIDENT_UPDATED: "Incident updated",
        AlertKind.INCIDENT_RESOLVED: "Incident resolved",
        AlertKind.PSAP_NOTICE: "Notice to the emergency answering points",
        AlertKind.TEST: "Alert test, no action needed",
    },
}

_SEVERITIES: dict[str, dict[Severity, str]] = {
    "fr": {Severity.INFO: "INFO", Severity.WARNING: "ALERTE", Severity.CRITICAL: "CRITIQUE"},
    "en": {Severity.INFO: "INFO", Severity.WARNING: "WARNING", Severity.CRITICAL: "CRITICAL"},
}

_ACTIONS: dict[str, dict[Action, str]] = {
    "fr": {
        Action.DRAINED: "site drainé (plus d'appels en direct)",
        Action.ROLLED_BACK: "retour à la version précédente",
        Action.FAILED_OVER: "trafic basculé vers les sites sains",
        Action.ROLLOUT_HALTED: "déploiement stoppé",
        Action.ROLLOUT_PAUSED: "déploiement en pause",
        Action.TRAFFIC_RESTORED: "trafic rétabli",
        Action.UNDRAINED: "site remis en service",
    },
    "en": {
        Action.DRAINED: "site drained (no live calls)",
        Action.ROLLED_BACK: "rolled back to the previous release",
        Action.FAILED_OVER: "traffic moved to healthy sites",
        Action.ROLLOUT_HALTED: "rollout halted",
        Action.ROLLOUT_PAUSED: "rollout paused",
        Action.TRAFFIC_RESTORED: "traffic restored",
        Action.UNDRAINED: "site back in service",
    },
}

# Short forms for the SMS, where every character counts.
_ACTIONS_SHORT: dict[str, dict[Action, str]] = {
    "fr": {
        Action.DRAINED: "site drainé",
        Action.ROLLED_BACK: "retour version précédente",
        Action.FAILED_OVER: "trafic basculé",
        Action.ROLLOUT_HALTED: "déploiement stoppé",
        Action.ROLLOUT_PAUSED: "déploiement en pause",
        Action.TRAFFIC_RESTORED: "trafic rétabli",
        Action.UNDRAINED: "site remis en service",
    },
    "en": {
        Action.DRAINED: "site drained",
        Action.ROLLED_BACK: "rolled back",
        Action.FAILED_OVER: "traffic moved",
        Action.ROLLOUT_HALTED: "rollout halted",
        Action.ROLLOUT_PAUSED: "rollout paused",
        Action.TRAFFIC_RESTORED: "traffic restored",
        Action.UNDRAINED: "site back in service",
    },
}

# Phrases around the facts; `none` is what an empty fact reads as.
_WORDS: dict[str, dict[str, str]] = {
    "fr": {"calls": "appels vers le", "at": "sur", "sites": "sites", "none": "aucune", "nothing": "rien",
           "estate": "toute la plateforme", "unknown": "inconnue", "min": "min", "subst": "Numéros de substitution "
           "à publier : ", "failing": "Ce qui échoue", "since": "Depuis", "release": "Version",
           "done": "Fait", "substitutes": "Numéros de substitution à publier", "evidence": "Mesures",
           "incident": "Incident", "where": "Sites"},
    "en": {"calls": "calls to", "at": "at", "sites": "sites", "none": "none", "nothing": "nothing",
           "estate": "the whole estate", "unknown": "unknown", "min": "min", "subst": "Substitute numbers "
           "to publish: ", "failing": "What is failing", "since": "Since", "release": "Release",
           "done": "Done", "substitutes": "Substitute numbers to publish", "evidence": "Evidence",
           "incident": "Incident", "where": "Sites"},
}

_BUILTIN: dict[str, dict[str, str]] = {
    "fr": {
        "subject": "[$severity] callfleet : $headline - $failing",
        "sms": "[$severity] callfleet : $headline. $failing depuis $since_short. Version $release. "
               "Fait : $actions_short.$substitutes_sentence Réf. $incident_id",
        "chat": "[$severity] $headline\n$failing depuis $since ($elapsed)\nVersion : $release\nFait : $actions"
                "$substitutes_line",
        "email": "$headline ($severity)\n\n"
                 "Ce qui échoue : $failing\n"
                 "Depuis : $since ($elapsed)\n"
                 "Sites : $sites\n"
                 "Version : $release\n"
                 "Ce qui a été fait : $actions\n"
                 "Numéros de substitution à publier : $substitutes\n\n"
                 "Mesures :\n$evidence\n\n"
                 "${note}"
                 "Incident : $incident_id\n"
                 "Clé de dédoublonnage : $dedupe_key\n"
                 "Émis par callfleet le $raised_at\n",
    },
    "en": {
        "subject": "[$severity] callfleet: $headline - $failing",
        "sms": "[$severity] callfleet: $headline. $failing since $since_short. Release $release. "
               "Done: $actions_short.$substitutes_sentence Ref $incident_id",
        "chat": "[$severity] $headline\n$failing since $since ($elapsed)\nRelease: $release\nDone: $actions"
                "$substitutes_line",
        "email": "$headline ($severity)\n\n"
                 "What is failing: $failing\n"
                 "Since: $since ($elapsed)\n"
                 "Sites: $sites\n"
                 "Release: $release\n"
                 "What was done: $actions\n"
                 "Substitute numbers to publish: $substitutes\n\n"
                 "Evidence:\n$evidence\n\n"
                 "${note}"
                 "Incident: $incident_id\n"
                 "Dedupe key: $dedupe_key\n"
                 "Raised by callfleet at $raised_at\n",
    },
}


# PSAP notices: what a regulator expects (FCC 47 CFR 4.9(h): provider, what is affected, the
# area, when it started, the expected return to service, a contact), in the PSAP's language.
_NOTICES: dict[str, dict[NoticeKind, str]] = {
    "fr": {NoticeKind.INITIAL: "Avis initial de panne", NoticeKind.FOLLOW_UP: "Avis de suivi de panne",
           NoticeKind.CLOSING: "Avis de fin de panne"},
    "en": {NoticeKind.INITIAL: "Initial outage notice", NoticeKind.FOLLOW_UP: "Follow-up outage notice",
           NoticeKind.CLOSING: "Outage ended notice"},
}

_PSAP_WORDS: dict[str, dict[str, str]] = {
    "fr": {"no_provider": "opérateur non renseigné (psap.provider absent de la configuration d'alerte)",
           "no_contact": "aucun contact configuré (psap.contact absent de la configuration d'alerte)",
           "no_area": "zone desservie par {site} non renseignée (psap.areas absent de la configuration d'alerte)",
           "no_subst": "aucun numéro de substitution configuré",
           "unknown_rts": "pas encore connu ; prochain avis au plus tard le {next}",
           "unknown_rts_final": "pas encore connu", "restored": "service rétabli le {ended} (durée {minutes} min)",
           "late": " (EN RETARD : échéance {due})", "so_far": "{minutes} min à ce jour",
           "none_next": "aucun (avis final)", "at_end": "à la fin de la panne", "whole": "toute la zone desservie"},
    "en": {"no_provider": "provider not set (no psap.provider in the alerting config)",
           "no_contact": "no contact configured (no psap.contact in the alerting config)",
           "no_area": "area served by {site} not set (no psap.areas in the alerting config)",
           "no_subst": "no substitute numbers configured",
           "unknown_rts": "not yet known; next notice by {next}",
           "unknown_rts_final": "not yet known", "restored": "service restored at {ended} (lasted {minutes} min)",
           "late": " (LATE: due by {due})", "so_far": "{minutes} min so far",
           "none_next": "none (final notice)", "at_end": "when the outage ends", "whole": "the whole served area"},
}

_PSAP_BUILTIN: dict[str, dict[str, str]] = {
    "fr": {
        "subject": "[$severity] $provider : $notice - $failing",
        "sms": "[$severity] $provider : $notice. $failing ($area) depuis $since_short. "
               "Fin prévue : $return_to_service. Numéros de substitution : $substitutes. Contact : $contact. "
               "Réf. $incident_id",
        "chat": "[$severity] $notice$late\nOpérateur : $provider\nCe qui est touché : $failing\nZone : $area\n"
                "Depuis : $since ($duration)\nRetour prévu du service : $return_to_service\n"
                "Numéros de substitution : $substitutes\nContact : $contact",
        "email": "$notice$late\n\n"
                 "Opérateur : $provider\n"
                 "Ce qui est touché : $failing\n"
                 "Numéros d'urgence touchés : $numbers\n"
                 "Zone touchée : $area\n"
                 "Début : $since ($duration)\n"
                 "Constaté le : $discovered\n"
                 "Retour prévu du service : $return_to_service\n"
                 "Numéros de substitution pour le public : $substitutes\n"
                 "Mesures prises : $actions\n"
                 "Contact : $contact\n"
                 "Prochain avis : $next_update\n\n"
                 "Incident : $incident_id\n"
                 "Émis par callfleet le $raised_at\n",
    },
    "en": {
        "subject": "[$severity] $provider: $notice - $failing",
        "sms": "[$severity] $provider: $notice. $failing ($area) since $since_short. Return to service: "
               "$return_to_service. Substitute numbers: $substitutes. Contact: $contact. Ref $incident_id",
        "chat": "[$severity] $notice$late\nProvider: $provider\nWhat is affected: $failing\nArea: $area\n"
                "Since: $since ($duration)\nExpected return to service: $return_to_service\n"
                "Substitute numbers: $substitutes\nContact: $contact",
        "email": "$notice$late\n\n"
                 "Provider: $provider\n"
                 "What is affected: $failing\n"
                 "Emergency numbers affected: $numbers\n"
                 "Area affected: $area\n"
                 "Started: $since ($duration)\n"
                 "Discovered: $discovered\n"
                 "Expected return to service: $return_to_service\n"
                 "Substitute numbers for the public: $substitutes\n"
                 "What was done: $actions\n"
                 "Contact: $contact\n"
                 "Next notice: $next_update\n\n"
                 "Incident: $incident_id\n"
                 "Sent by callfleet at $raised_at\n",
    },
}


@dataclass(frozen=True)
class Message:
    """One alert rendered for one audience: every form, plus the facts for cards."""

    language: str
    severity: Severity
    title: str
    subject: str
    sms: str
    email: str
    chat: str
    facts: tuple[tuple[str, str], ...]


def format_number(number: str) -> str:
    """0472000000 -> 04 72 00 00 00 (how the public reads a French number)."""
    return " ".join(number[i:i + 2] for i in range(0, len(number), 2)) if len(number) == 10 else number


def _figure(value: Figure) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _failing(alert: Alert, w: dict[str, str]) -> str:
    numbers = ", ".join(alert.failing.numbers)
    sites = ", ".join(alert.failing.sites)
    if numbers and sites:
        return _cap(f"{w['calls']} {numbers} {w['at']} {sites}")
    if numbers:
        return _cap(f"{w['calls']} {numbers}")
    if sites:
        return _cap(f"{w['sites']} {sites}")
    return _cap(w["estate"])


def _when(moment: datetime, tz: ZoneInfo, *, short: bool) -> str:
    local = moment.astimezone(tz)
    zone = "UTC" if tz.key == "UTC" else local.strftime("%Z")
    return local.strftime("%d/%m %H:%M" if short else "%Y-%m-%d %H:%M") + f" {zone}"


def _variables(alert: Alert, lang: str, tz: ZoneInfo) -> dict[str, str]:
    w = _WORDS[lang]
    subs = ", ".join(format_number(n) for n in alert.substitute_numbers)
    rel = alert.release
    release = (f"{rel.from_release or w['unknown']} -> {rel.to_release or w['unknown']}"
               if rel.from_release or rel.to_release else w["unknown"])
    minutes = max(0, int((alert.raised_at - alert.since).total_seconds() // 60))
    evidence = "\n".join(f"  - {k}: {_figure(v)}" for k, v in alert.evidence.items()) or f"  - {w['none']}"
    return {
        "severity": _SEVERITIES[lang][alert.severity],
        "headline": _KINDS[lang][alert.kind],
        "failing": _failing(alert, w),
        "numbers": ", ".join(alert.failing.numbers) or w["none"],
        "sites": ", ".join(alert.failing.sites) or w["none"],
        "since": _when(alert.since, tz, short=False),
        "since_short": _when(alert.since, tz, short=True),
        "elapsed": f"{minutes} {w['min']}",
        "release": release,
        "actions": ", ".join(_ACTIONS[lang][a] for a in alert.actions) or w["nothing"],
        "actions_short": ", ".join(_ACTIONS_SHORT[lang][a] for a in alert.actions) or w["nothing"],
        "substitutes": subs or w["none"],
        "substitutes_sentence": f" {w['subst']}{subs}." if subs else "",
        "substitutes_line": f"\n{w['subst']}{subs}" if subs else "",
        "evidence": evidence,
        "note": f"{alert.note}\n\n" if alert.note else "",
        "incident_id": alert.incident_id,
        "dedupe_key": alert.dedupe_key,
        "raised_at": _when(alert.raised_at, tz, short=False),
    }


def _psap_variables(alert: Alert, lang: str, tz: ZoneInfo, content: PsapContent) -> dict[str, str]:
    """The PSAP notice's own phrases; what the config does not say is said to be missing."""
    assert alert.psap is not None
    p, pw = alert.psap, _PSAP_WORDS[lang]
    areas = [content.areas.get(s) or pw["no_area"].format(site=s) for s in alert.failing.sites]
    minutes = max(0, int(((p.ended_at or alert.raised_at) - alert.since).total_seconds() // 60))
    if p.notice is NoticeKind.CLOSING and p.ended_at is not None:
        rts = pw["restored"].format(ended=_when(p.ended_at, tz, short=False), minutes=minutes)
    elif p.next_update_by is not None:
        rts = pw["unknown_rts"].format(next=_when(p.next_update_by, tz, short=False))
    else:
        rts = pw["unknown_rts_final"]  # a follow-up: the closing notice comes at the end
    subs = ", ".join(format_number(n) for n in alert.substitute_numbers)
    return {
        "notice": _NOTICES[lang][p.notice],
        "provider": content.provider or pw["no_provider"],
        "contact": content.contact or pw["no_contact"],
        "area": "; ".join(areas) or pw["whole"],
        "discovered": _when(p.discovered_at, tz, short=False),
        "duration": pw["so_far"].format(minutes=minutes) if p.notice is not NoticeKind.CLOSING
        else f"{minutes} {_WORDS[lang]['min']}",
        "return_to_service": rts,
        "substitutes": subs or pw["no_subst"],
        "next_update": _when(p.next_update_by, tz, short=False) if p.next_update_by
        else pw["none_next"] if p.notice is NoticeKind.CLOSING else pw["at_end"],
        "late": pw["late"].format(due=_when(p.due_by, tz, short=False)) if p.late else "",
    }


def _template(lang: str, form: str, override_dir: Path | None, *, psap: bool = False) -> Template:
    if override_dir is not None:
        path = override_dir / f"{lang}.{'psap.' if psap else ''}{form}.tmpl"
        if path.is_file():
            return Template(path.read_text(encoding="utf-8"))
    return Template((_PSAP_BUILTIN if psap else _BUILTIN)[lang][form])


def render(*, alert: Alert, language: Language, timezone: str = "UTC", override_dir: Path | None = None,
           psap: PsapContent | None = None) -> Message:
    """Render an alert for one audience (language and time zone). A PSAP notice takes its
    provider, contact and areas from `psap` (the alerting config's section)."""
    tz = ZoneInfo(timezone)
    values = _variables(alert, language, tz)
    w = _WORDS[language]
    if alert.psap is not None:
        values.update(_psap_variables(alert, language, tz, psap or PsapContent()))
        forms = {f: _template(language, f, override_dir, psap=True).safe_substitute(values) for f in FORMS}
        facts = [(w["failing"], values["failing"]), ("provider" if language == "en" else "opérateur",
                                                      values["provider"]),
                 ("area" if language == "en" else "zone", values["area"]),
                 (w["since"], f"{values['since']} ({values['duration']})"),
                 ("return to service" if language == "en" else "retour du service", values["return_to_service"]),
                 (w["substitutes"], values["substitutes"]), ("contact", values["contact"]),
                 (w["incident"], alert.incident_id)]
        return Message(language=language, severity=alert.severity, title=f"[{values['severity']}] {values['notice']}",
                       subject=forms["subject"].replace("\n", " "), sms=forms["sms"], email=forms["email"],
                       chat=forms["chat"], facts=tuple(facts))
    forms = {f: _template(language, f, override_dir).safe_substitute(values) for f in FORMS}
    facts = [(w["failing"], values["failing"]), (w["since"], f"{values['since']} ({values['elapsed']})"),
             (w["where"], values["sites"]), (w["release"], values["release"]), (w["done"], values["actions"])]
    if alert.substitute_numbers:
        facts.append((w["substitutes"], values["substitutes"]))
    facts.extend((f"{w['evidence']}: {k}", _figure(v)) for k, v in alert.evidence.items())
    facts.append((w["incident"], alert.incident_id))
    return Message(language=language, severity=alert.severity, title=f"[{values['severity']}] {values['headline']}",
                   subject=forms["subject"].replace("\n", " "), sms=forms["sms"], email=forms["email"],
                   chat=forms["chat"], facts=tuple(facts))
