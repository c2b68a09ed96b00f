"""SMS parts: GSM 7-bit when possible, else UCS-2; UDH; never a character cut in two."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from smpplib.gsm import GSM_CHARACTER_TABLE, make_parts

from orchestrator.alerting.channels.sms_encoding import GSM, UCS2, UDHI, gsm_decode, reassemble, split_sms


def _roundtrip(text: str) -> str:
    p = split_sms(text)
    [out] = reassemble([(p.esm_class, p.data_coding, part) for part in p.parts]).values()
    return out


def test_short_gsm_is_one_part_without_udh() -> None:
    p = split_sms("112 KO a Lyon depuis 14:45, numéro 04 72 00 00 00")
    assert p.data_coding == GSM and len(p.parts) == 1 and not p.esm_class & UDHI


def test_long_gsm_splits_at_153() -> None:
    text = "A" * 400
    p = split_sms(text, reference=7)
    assert p.data_coding == GSM and p.esm_class & UDHI
    assert [len(x) - 6 for x in p.parts] == [153, 153, 94]
    assert [x[:6] for x in p.parts] == [bytes((5, 0, 3, 7, 3, i)) for i in (1, 2, 3)]
    assert _roundtrip(text) == text


def test_ucs2_when_a_character_is_not_gsm() -> None:
    text = "ça " * 60
    p = split_sms(text)
    assert p.data_coding == UCS2
    assert all(len(x) - 6 <= 134 for x in p.parts) and len(p.parts) == 3  # 67 characters a part
    assert _roundtrip(text) == text


def test_gsm_escapes_are_never_cut() -> None:
    text = "€" * 100  # each € is ESC + 0x65: a cut at byte 153 would separate the 77th
    naive, _coding, _esm = make_parts(text)
    assert naive[0][-1:] == b"\x1b"  # smpplib's own split does cut it
    p = split_sms(text)
    assert p.data_coding == GSM
    # Each part decodes alone to whole characters (what a handset shows if parts go astray).
    assert "".join(gsm_decode(part[6:]) for part in p.parts) == text
    assert all(not part.endswith(b"\x1b") for part in p.parts)


def test_backtick_is_not_mistaken_for_gsm() -> None:
    assert split_sms("a`b").data_coding == UCS2


def test_emoji_beyond_the_bmp_survives() -> None:
    text = "🚨" * 80
    assert _roundtrip(text) == text


GSM_CHARS = sorted({c for c in GSM_CHARACTER_TABLE if c not in "`\x1b"})


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from([*GSM_CHARS, "ç", "ê", "’", "€"]), min_size=1, max_size=700))
def test_any_text_reassembles(text: str) -> None:
    assert _roundtrip(text) == text
