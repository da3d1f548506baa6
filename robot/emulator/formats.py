"""Identifiers, dates and phone numbers in the shapes Twilio uses."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

API_VERSION = "2010-04-01"

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
#: SIDs need to be unique, not secret; os.urandom per SID is slow on some hosts.
_sid_random = random.Random()


def new_sid(prefix: str) -> str:
    """``CA``/``SM``… followed by 32 lowercase hex digits."""
    return f"{prefix}{_sid_random.getrandbits(128):032x}"


def rfc2822(timestamp: float | None) -> str | None:
    """``Tue, 31 Aug 2010 20:36:28 +0000`` for a Unix time (None stays None)."""
    if timestamp is None:
        return None
    return _rfc2822_seconds(int(timestamp))


@lru_cache(maxsize=256)
def _rfc2822_seconds(seconds: int) -> str:
    # A call's JSON carries several times that are mostly the same second: format each once.
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))
