"""Who answers a number and what they do: the last-digit table and per-number overrides.

A behaviour is a string:

* ``human:<keys>``: answers and listens; ``<keys>`` is a comma-separated list of what to press
  on the 1st, 2nd… ``<Gather>`` (``none`` or empty = press nothing), e.g. ``human:9,1``.
  ``human`` alone presses nothing.
* ``long-ring:<keys>``: like ``human`` but answers after a long ring.
* ``hangup``: answers and hangs up within 3 s.  ``no-answer``, ``busy``, ``voicemail`` (answering
  machine with a beep), ``unreachable`` (calls fail, SMS undelivered 30003).
* SMS/REST faults: ``invalid`` (call and SMS create → 21211), ``landline`` (SMS create → 21614),
  ``opted-out`` (SMS create → 21610). For calls, ``landline`` and ``opted-out`` numbers behave as
  their last digit says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

Kind = Literal[
    "human",
    "long-ring",
    "hangup",
    "no-answer",
    "busy",
    "voicemail",
    "unreachable",
    "invalid",
    "landline",
    "opted-out",
]

_WITH_KEYS: frozenset[str] = frozenset({"human", "long-ring"})
_PLAIN: frozenset[str] = frozenset(
    {"hangup", "no-answer", "busy", "voicemail", "unreachable", "invalid", "landline", "opted-out"}
)
_KEYS = re.compile(r"^[0-9*#]*$")

#: Behaviour by the last digit of the number.
LAST_DIGIT_TABLE: dict[str, str] = {
    "0": "human:1",
    "1": "human:2",
    "2": "human:3",
    "3": "human:none",
    "4": "hangup",
    "5": "no-answer",
    "6": "busy",
    "7": "voicemail",
    "8": "unreachable",
    "9": "long-ring:1",
}


@dataclass(frozen=True)
class Callee:
    kind: Kind
    #: What to press on each ``<Gather>`` in turn; "" presses nothing. Later gathers: nothing.
    keys: tuple[str, ...] = ()
    #: The behaviour string this came from.
    text: str = ""

    def keys_for(self, gather_index: int) -> str:
        return self.keys[gather_index] if gather_index < len(self.keys) else ""

    @property
    def answers(self) -> bool:
        return self.kind in ("human", "long-ring", "hangup", "voicemail")


def parse_behaviour(text: str) -> Callee:
    """Parse a behaviour string; ValueError names what is wrong."""
    raw = text.strip().lower()
    kind, sep, rest = raw.partition(":")
    if kind in _PLAIN:
        if sep:
            raise ValueError(f"behaviour {text!r}: {kind!r} takes no keys")
        return Callee(cast(Kind, kind), (), raw)
    if kind not in _WITH_KEYS:
        raise ValueError(f"unknown callee behaviour {text!r}")
    keys: list[str] = []
    if rest:
        for part in rest.split(","):
            part = part.strip()
            if part == "none":
                part = ""
            if not _KEYS.match(part):
                raise ValueError(f"behaviour {text!r}: bad key sequence {part!r}")
            keys.append(part)
    return Callee(cast(Kind, kind), tuple(keys), raw)


def parse_keys(text: str) -> tuple[str, ...]:
    """``"9,1"`` → ("9", "1"): the keys an inbound caller presses on successive gathers."""
    return parse_behaviour("human:" + text).keys if text else ()


def default_behaviour(number: str) -> str:
    last = number[-1:] if number[-1:].isdigit() else "0"
    return LAST_DIGIT_TABLE[last]


def behaviour_for(number: str, overrides: Mapping[str, str]) -> Callee:
    """The override for ``number`` if any, else its last-digit behaviour."""
    text = overrides.get(number)
    return parse_behaviour(text if text is not None else default_behaviour(number))


def call_behaviour_for(number: str, overrides: Mapping[str, str]) -> Callee:
    """As :func:`behaviour_for`, but SMS-only faults fall back to the last-digit table."""
    callee = behaviour_for(number, overrides)
    if callee.kind in ("landline", "opted-out"):
        return parse_behaviour(default_behaviour(number))
    return callee
