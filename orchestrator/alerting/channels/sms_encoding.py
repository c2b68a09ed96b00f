"""Split an SMS text into SMPP short_message parts with the right encoding.

GSM 03.38 (data_coding 0, 153 septets a part) when every character fits, else UCS-2
(data_coding 8, 67 characters a part); parts carry a concatenation UDH (IEI 0x00, 8-bit
reference) and esm_class has UDHI set. smpplib.gsm.make_parts decides the encoding;
the split itself is redone on character boundaries because make_parts cuts bytes, which
can separate a GSM escape (0x1B + char, e.g. €) or a UTF-16 surrogate pair across two
parts (its own FIXME says so).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smpplib import consts  # type: ignore[import-untyped]
from smpplib.gsm import ENCODINGS, GSM_CHARACTER_TABLE, make_parts  # type: ignore[import-untyped]

GSM = consts.SMPP_ENCODING_DEFAULT
UCS2 = consts.SMPP_ENCODING_ISO10646
UDHI = consts.SMPP_GSMFEAT_UDHI
MAX_PARTS = 255


@dataclass(frozen=True)
class SmsParts:
    """What to put in each submit_sm: short_message bytes, data_coding, esm_class."""

    parts: tuple[bytes, ...]
    data_coding: int
    esm_class: int


def _encoder(coding: int) -> tuple[Callable[[str], bytes], int]:
    encode, _single, part_size = ENCODINGS[coding]
    return encode, part_size


def _split_chars(text: str, encode: Callable[[str], bytes], part_size: int) -> list[bytes]:
    chunks: list[bytes] = []
    current = b""
    i = 0
    while i < len(text):
        # A surrogate pair never exists in a Python str, but a non-BMP character is two
        # UTF-16 units: keep the encoded unit of one character together.
        piece = encode(text[i])
        if len(current) + len(piece) > part_size:
            chunks.append(current)
            current = b""
        current += piece
        i += 1
    if current:
        chunks.append(current)
    return chunks


def split_sms(text: str, *, reference: int | None = None) -> SmsParts:
    """Encode and, when too long for one SMS, split with a concatenation header.

    `reference` (0-255) identifies the concatenated message; random by default."""
    # smpplib's GSM table uses the backtick as a filler for unused cells: a real backtick
    # would be encoded as a wrong character, so it forces UCS-2.
    coding = UCS2 if "`" in text else GSM
    parts, coding, esm_class = make_parts(text, encoding=coding)
    if len(parts) == 1:
        return SmsParts(parts=(bytes(parts[0]),), data_coding=coding, esm_class=esm_class)
    encode, part_size = _encoder(coding)
    chunks = _split_chars(text, encode, part_size)
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"SMS text too long: {len(chunks)} parts (at most {MAX_PARTS})")
    ref = random.randint(0, 255) if reference is None else reference
    total = len(chunks)
    out = tuple(bytes((5, 0, 3, ref, total, seq)) + chunk for seq, chunk in enumerate(chunks, start=1))
    return SmsParts(parts=out, data_coding=coding, esm_class=esm_class | UDHI)


def gsm_decode(data: bytes) -> str:
    """GSM 03.38 septets (one per byte, unpacked, as smpplib encodes them) back to text."""
    out: list[str] = []
    escape = False
    for byte in data:
        if escape:
            out.append(GSM_CHARACTER_TABLE[byte + 0x80])
            escape = False
        elif byte == 0x1B:
            escape = True
        else:
            out.append(GSM_CHARACTER_TABLE[byte])
    return "".join(out)


def reassemble(parts: Sequence[tuple[int, int, bytes]]) -> dict[int, str]:
    """(esm_class, data_coding, short_message) parts -> text per concatenation reference
    (-1 for a single unsplit message). Used by tests and by anything acting as an SMSC."""
    groups: dict[int, dict[int, bytes]] = {}
    codings: dict[int, int] = {}
    for esm_class, coding, body in parts:
        if esm_class & UDHI:
            udh_len = body[0] + 1
            ref, seq = body[3], body[5]
            groups.setdefault(ref, {})[seq] = body[udh_len:]
            codings[ref] = coding
        else:
            groups.setdefault(-1, {})[len(groups.get(-1, {})) + 1] = body
            codings[-1] = coding
    texts: dict[int, str] = {}
    for ref, chunks in groups.items():
        data = b"".join(chunks[k] for k in sorted(chunks))
        texts[ref] = data.decode("utf-16-be") if codings[ref] == UCS2 else gsm_decode(data)
    return texts
