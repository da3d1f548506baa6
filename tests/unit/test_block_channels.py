"""A permanent provider error stops the failing channel; only a non-existent number stops both."""

from __future__ import annotations

import pytest

from robot.dispatch import block_channels
from robot.models import Case


@pytest.mark.parametrize(
    ("channel", "code", "sms_blocked", "calls_blocked"),
    [
        ("sms", 30004, True, False),  # filtered by the carrier: calls still work
        ("sms", 21610, True, False),  # opted out of SMS
        ("sms", 21606, True, False),  # our sender is wrong: not the person's fault
        ("sms", None, True, False),
        ("call", 21214, False, True),
        ("sms", 21211, True, True),  # invalid number: nothing can reach it
        ("call", 21217, True, True),
        ("sms", 30005, True, True),  # unknown handset: the number does not exist
    ],
)
def test_it_blocks_only_what_the_error_rules_out(
    channel: str, code: int | None, sms_blocked: bool, calls_blocked: bool
) -> None:
    case = Case(sms_blocked=False, calls_blocked=False)
    block_channels(case, channel, code)
    assert (case.sms_blocked, case.calls_blocked) == (sms_blocked, calls_blocked)
