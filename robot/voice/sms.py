"""SMS encoding and segment counting (GSM 03.38 7-bit or UCS-2), as carriers bill them."""

from __future__ import annotations

import math
from dataclasses import dataclass

# GSM 03.38 default alphabet; each character is one septet.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: an escape septet plus one, so each counts twice.
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


@dataclass(frozen=True)
class SmsSize:
    #: "GSM-7" or "UCS-2" (any character outside GSM 03.38, e.g. Chinese, forces UCS-2).
    encoding: str
    #: Septets for GSM-7, UTF-16 code units for UCS-2.
    units: int
    segments: int

    def budget(self, segments: int) -> int:
        """How many units fit in ``segments`` segments in this encoding."""
        single, multi = (
            (GSM7_SINGLE, GSM7_MULTI)
            if self.encoding == "GSM-7"
            else (
                UCS2_SINGLE,
                UCS2_MULTI,
            )
        )
        return single if segments <= 1 else multi * segments


def sms_size(text: str) -> SmsSize:
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text):
        units = sum(2 if ch in _GSM7_EXTENSION else 1 for ch in text)
        single, multi, encoding = GSM7_SINGLE, GSM7_MULTI, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2  # characters outside the BMP take two
        single, multi, encoding = UCS2_SINGLE, UCS2_MULTI, "UCS-2"
    segments = 0 if units == 0 else 1 if units <= single else math.ceil(units / multi)
    return SmsSize(encoding, units, segments)


def sms_segments(text: str) -> int:
    return sms_size(text).segments
