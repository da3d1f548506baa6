"""Mask phone numbers in anything that leaves the service or reaches a log."""

from __future__ import annotations

import re
from typing import Any

from robot.phones import mask

#: E.164 as written, or percent-encoded in a URL (%2B8613800138000).
_E164 = re.compile(r"(?:\+|%2B)\d{7,15}", re.IGNORECASE)


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = text[1:] if text.startswith("+") else text[3:]
    return mask("+" + digits)


def redact(value: Any) -> Any:
    """Return ``value`` with every E.164-looking number masked, recursively."""
    if isinstance(value, str):
        return _E164.sub(_mask_match, value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
