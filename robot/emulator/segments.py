"""How many SMS segments a body takes (GSM-7: 160/153 septets, UCS-2: 70/67 code units)."""

from __future__ import annotations

import math

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: Characters reached through the escape code: two septets each.
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def is_gsm7(body: str) -> bool:
    return all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in body)


def count_segments(body: str) -> int:
    if not body:
        return 1
    if is_gsm7(body):
        units = sum(2 if ch in _GSM7_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)
