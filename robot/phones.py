"""Phone numbers: parse any common format to E.164, mask for logs and lists, find the zone."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as number_timezones


class InvalidNumber(ValueError):
    """The text is not a number a phone could have."""


@dataclass(frozen=True)
class ParsedNumber:
    e164: str
    region: str | None
    #: IANA zone of the number (the first one for countries with several); "UTC" if unknown.
    timezone: str


# The same number often comes back (a merge, a relative on several warnings); a parse costs
# about 50 microseconds, most of an intake batch's validation.
@functools.lru_cache(maxsize=8192)
def parse_number(text: str, default_region: str) -> ParsedNumber:
    """Read ``text`` as a phone number and return it in E.164.

    Numbers without a country code are read in ``default_region``. Impossible numbers (wrong
    length, unassigned prefixes) are refused, not guessed at.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidNumber("must be a phone number")
    if len(text) > 40:
        raise InvalidNumber("is too long to be a phone number")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"is not a phone number ({exc._msg})") from None
    # The number's type is what is_valid_number and time_zones_for_number each work out (the
    # costly part); work it out once. UNKNOWN is exactly what is_valid_number refuses.
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        raise InvalidNumber("is not a valid phone number")
    country_code = number.country_code or 0  # always set on a parsed number
    if phonenumbers.is_number_type_geographical(kind, country_code):
        zones = number_timezones.time_zones_for_geographical_number(number)
    else:
        zones = number_timezones.time_zones_for_number(number)  # country-wide: rare, cheap
    zone = zones[0] if zones and zones[0] != "Etc/Unknown" else "UTC"
    return ParsedNumber(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=phonenumbers.region_code_for_number(number),
        timezone=zone,
    )


def mask(e164: str | None) -> str:
    """Hide the middle of a number: +86138****5678. Used in every log line and list."""
    if not e164:
        return ""
    if len(e164) <= 7:
        return e164[:2] + "*" * (len(e164) - 2)
    return e164[:6] + "*" * (len(e164) - 10 if len(e164) > 10 else 2) + e164[-4:]
