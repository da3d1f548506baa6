"""The ladder on a compressed clock (time_scale=120: a policy minute passes in half a second)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from robot.config import Settings
from tests.e2e.conftest import Stack, start_stack

SCALE = 120.0


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    yield from start_stack(replace(settings, time_scale=SCALE))


def at(event: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["at"]))


def test_a_never_answering_number_reaches_humans_and_its_contact_on_time(stack: Stack) -> None:
    case_id = stack.post_warning(
        phone="+8613800138005",
        contacts=[{"phone": "+8613900139000", "relation": "child", "name": "Son"}],
    )["case_id"]

    def visited() -> dict[str, object] | None:
        case = stack.case(case_id)
        return case if any(e["kind"] == "home_visit.requested" for e in case["timeline"]) else None

    case = stack.wait_for(visited, timeout=40, what="the home-visit request")
    timeline = case["timeline"]
    opened = at(timeline[0])

    def minutes(kind: str) -> float:
        event = next(e for e in timeline if e["kind"] == kind)
        return (at(event) - opened).total_seconds() * SCALE / 60

    # Human queue at the first failed call, or at 5 policy minutes, whichever comes first.
    assert minutes("case.escalated") <= 6.5
    assert 14 <= minutes("contacts.notified") <= 18  # contacts at 15 policy minutes
    assert 29 <= minutes("home_visit.requested") <= 33  # home visit at 30
    disclosures = [
        e
        for e in timeline
        if e["kind"] == "disclosure" and e["data"].get("what") == "relatives_notice"
    ]
    assert len(disclosures) == 1 and disclosures[0]["actor"] == "robot"
    assert case["state"] == "escalated"
    # The contact really got the notice: an SMS and a call through the carrier.
    contact_calls = stack.control("GET", "calls", params={"to": "+8613900139000"})
    assert len(contact_calls) == 1
    contact_sms = [m for m in stack.control("GET", "messages") if m["to"] == "+8613900139000"]
    assert len(contact_sms) == 1
    assert "fake_police" not in contact_sms[0]["body"] and "公检法" not in contact_sms[0]["body"]
    # Retries every 5 policy minutes, up to three.
    person_calls = stack.control("GET", "calls", params={"to": "+8613800138005"})
    person_attempts = [
        (a["purpose"], a["state"], a["outcome"], a["due_at"])
        for a in case["attempts"]
        if a["channel"] == "call" and a["to"].endswith("8005")
    ]
    assert 2 <= len(person_calls) <= 4, person_attempts
    # Every step is on the timeline in order, with who or what did it.
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    assert {e["actor"] for e in timeline} >= {"source:e2e", "robot", "provider"}
    assert any(e["actor"].startswith("worker:") for e in timeline)


def test_a_confirmed_case_gets_no_more_calls_and_follow_ups_outside_quiet_hours(
    stack: Stack,
) -> None:
    case_id = stack.post_warning(phone="+8613800138000")["case_id"]
    stack.wait_for(lambda: stack.case(case_id)["state"] == "closed", what="closed")
    # Wait past two retry intervals (5 policy minutes each): no new call may appear.
    import time

    time.sleep(10 * 60 / SCALE)
    assert len(stack.control("GET", "calls", params={"to": "+8613800138000"})) == 1
    case = stack.case(case_id)
    follow_ups = [a for a in case["attempts"] if a["purpose"] == "follow_up"]
    assert len(follow_ups) == len(stack.settings.policy.high.follow_up_days)
    zone = ZoneInfo("Asia/Shanghai")
    quiet_start, quiet_end = (
        stack.settings.policy.quiet_hours_start,
        stack.settings.policy.quiet_hours_end,
    )
    for attempt in follow_ups:
        local = datetime.fromisoformat(attempt["due_at"]).astimezone(zone)
        assert quiet_end <= local.hour < quiet_start, local
    assert all(a["state"] == "scheduled" for a in follow_ups)
