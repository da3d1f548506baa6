"""Mask phone numbers in anything that leaves the service or reaches a log."""

from __future__ import annotations

import re
from typing import Any

from robot.phones import mask

_E164 = re.compile(r"\+\d{7,15}")


def redact(value: Any) -> Any:
    """Return ``value`` with every E.164-looking number masked, recursively."""
    if isinstance(value, str):
        return _E164.sub(lambda m: mask(m.group(0)), value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
