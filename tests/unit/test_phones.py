"""Phone numbers: the one-pass parse agrees with the library's own checks; masking."""

from __future__ import annotations

import phonenumbers
import pytest
from phonenumbers import timezone as number_timezones

from robot.phones import InvalidNumber, mask, parse_number

SAMPLES = [
    ("+8613800138000", "CN"),  # mobile
    ("13912345678", "CN"),  # national mobile
    ("010 6552 9988", "CN"),  # Beijing landline
    ("+86 400 810 8888", "CN"),  # non-geographic service number
    ("+1 212 555 0199", "CN"),  # New York, several zones in the country
    ("+1 800 555 0199", "US"),  # toll free: not geographic
    ("+44 20 7946 0018", "CN"),  # London landline
    ("+44 7700 900123", "GB"),  # UK mobile: not geographic
    ("+86 138 0013", "CN"),  # too short
    ("+86 199 9999 99999", "CN"),  # too long
    ("+999 123", "CN"),  # no such country code
    ("12345", "US"),
]


def _by_the_book(text: str, region: str) -> tuple[str, str | None, str] | None:
    """What the library's documented calls say, one by one."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    zones = number_timezones.time_zones_for_number(number)
    zone = zones[0] if zones and zones[0] != "Etc/Unknown" else "UTC"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(number), zone


@pytest.mark.parametrize(("text", "region"), SAMPLES)
def test_parse_agrees_with_the_librarys_own_checks(text: str, region: str) -> None:
    expected = _by_the_book(text, region)
    if expected is None:
        with pytest.raises(InvalidNumber):
            parse_number(text, region)
        return
    parsed = parse_number(text, region)
    assert (parsed.e164, parsed.region, parsed.timezone) == expected


def test_the_samples_cover_valid_invalid_geographic_and_not() -> None:
    verdicts = [_by_the_book(text, region) for text, region in SAMPLES]
    assert sum(v is None for v in verdicts) >= 3
    zones = {v[2] for v in verdicts if v is not None}
    assert {"Asia/Shanghai", "America/New_York", "Europe/London"} <= zones


@pytest.mark.parametrize("text", ["", "   ", "x" * 41, "not a number"])
def test_nonsense_is_refused(text: str) -> None:
    with pytest.raises(InvalidNumber):
        parse_number(text, "CN")


def test_mask_hides_the_middle() -> None:
    assert mask("+8613800138000") == "+86138****8000"
    assert mask("+12125550199") == "+12125**0199"
    assert mask(None) == ""
