"""Text checks shared by the linter and anyone composing a message: links, phone numbers,
spoken duration."""

from __future__ import annotations

import re

from robot.config import VoiceSettings

# Scheme or www prefix, anything up to the next space.
_URL = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.-]*://|\bwww\s*[.．。])\S*")
# Domain-like text: latin labels joined by dots (full-width dots too) ending in a latin TLD.
_DOMAIN = re.compile(
    r"(?i)(?<![a-z0-9-])[a-z0-9][a-z0-9-]*(?:[.．。][a-z0-9-]+)*[.．。][a-z]{2,}(?![a-z0-9-])"
)
# Mail addresses and @handles are contact details a fraudster could swap in too.
_HANDLE = re.compile(r"\S*@\S+")
# A run of digits, possibly written with spaces, dashes, dots or brackets inside.
_NUMBER = re.compile(r"\+?\(?\d(?:[\d\s().-]*\d)?")

_CJK_CHAR = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_DIGIT = re.compile(r"\d")


def find_links(text: str) -> list[str]:
    """URLs, www-addresses, domain-like text and @handles in ``text``."""
    found: list[str] = []
    for pattern in (_URL, _DOMAIN, _HANDLE):
        for match in pattern.finditer(text):
            if not any(match.group() in earlier for earlier in found):
                found.append(match.group())
    return found


def find_phone_numbers(text: str, *, allowed: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Digit runs of three or more digits whose digits are not one of ``allowed``.

    Single digits ("press 2") are not numbers; "110" and "96110" are.
    """
    allowed_digits = {re.sub(r"\D", "", number) for number in allowed}
    found = []
    for match in _NUMBER.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if len(digits) >= 3 and digits not in allowed_digits:
            found.append(match.group().strip())
    return found


def estimate_seconds(text: str, *, cjk: bool, settings: VoiceSettings) -> float:
    """How long ``text`` takes to say, roughly, at the linter's configured speaking speed.

    Chinese: characters (and digits, one syllable each) over estimate_cjk_chars_per_second.
    Others: words (a digit counts 0.7 of a word) over estimate_words_per_minute. Punctuation
    is free; the budgets are meant to leave room for it.
    """
    cjk_chars = len(_CJK_CHAR.findall(text))
    digits = len(_DIGIT.findall(text))
    words = len(_WORD.findall(_CJK_CHAR.sub(" ", text)))
    cps = settings.estimate_cjk_chars_per_second
    wps = settings.estimate_words_per_minute / 60.0
    if cjk:
        return (cjk_chars + digits + 1.5 * words) / cps
    return (words + 0.7 * digits) / wps + cjk_chars / cps
