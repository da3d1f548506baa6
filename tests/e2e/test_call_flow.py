"""A posted warning becomes a real SMS and call through the SDK and the emulator; every callee row."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Stack


def first(case: dict[str, Any], channel: str) -> dict[str, Any]:
    return next(
        a for a in case["attempts"] if a["channel"] == channel and a["purpose"] == "warning"
    )


def settled(stack: Stack, case_id: int, channel: str = "call") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        case = stack.case(case_id)
        attempts = [
            a for a in case["attempts"] if a["channel"] == channel and a["purpose"] == "warning"
        ]
        return case if attempts and attempts[0]["outcome"] else None

    return stack.wait_for(check, what=f"the first {channel} outcome")  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("digit", "outcome"),
    [
        ("0", "confirmed"),
        ("3", "answered"),
        ("4", "hung_up"),
        ("5", "no_answer"),
        ("6", "busy"),
        ("8", "failed"),
        ("9", "confirmed"),
    ],
)
def test_each_callee_gives_its_outcome(stack: Stack, digit: str, outcome: str) -> None:
    case_id = stack.post_warning(phone=f"+86138001380{digit}0"[:-1] + digit)["case_id"]
    case = settled(stack, case_id)
    assert first(case, "call")["outcome"] == outcome
    assert first(case, "call")["to"].endswith(digit)


def test_key_1_confirms_and_stops_the_robot(stack: Stack) -> None:
    case_id = stack.post_warning(phone="+8613800138000")["case_id"]
    case = settled(stack, case_id)
    call = first(case, "call")
    assert call["digits"] == "1"
    kinds = [e["kind"] for e in case["timeline"]]
    assert "case.confirmed" in kinds
    case = stack.wait_for(
        lambda: (c := stack.case(case_id))["state"] == "closed" and c, what="closed"
    )
    assert case["disposition"] == "confirmed"
    assert not [
        a
        for a in case["attempts"]
        if a["state"] == "scheduled" and a["purpose"] in ("warning", "retry")
    ]


def test_key_2_puts_the_person_through_and_queues_the_case(stack: Stack) -> None:
    case_id = stack.post_warning(phone="+8613800138001")["case_id"]
    case = stack.wait_for(
        lambda: (
            (c := stack.case(case_id))["state"] == "escalated"
            and any(e["kind"] == "call.put_through" for e in c["timeline"])
            and c
        ),
        what="put through",
    )
    assert case["critical"] is True
    assert first(case, "call")["digits"] == "2"
    center = stack.settings.center.call_center_number
    legs = stack.control("GET", "calls", params={"to": center})
    assert len(legs) == 1  # the <Dial> leg to the call center


def test_key_3_makes_the_case_critical(stack: Stack) -> None:
    case_id = stack.post_warning(phone="+8613800138002")["case_id"]
    case = stack.wait_for(lambda: (c := stack.case(case_id))["critical"] and c, what="critical")
    assert case["state"] == "escalated"
    assert any(
        e["kind"] == "case.escalated" and e["data"]["reason"] == "already paid"
        for e in case["timeline"]
    )


def test_a_machine_gets_a_voicemail_and_counts_as_not_reached(stack: Stack) -> None:
    case_id = stack.post_warning(phone="+8613800138007")["case_id"]
    case = settled(stack, case_id)
    assert first(case, "call")["outcome"] == "voicemail"
    assert first(case, "call")["answered_by"].startswith("machine")
    stack.wait_for(
        lambda: any(e["kind"] == "call.voicemail_left" for e in stack.case(case_id)["timeline"]),
        what="voicemail left",
    )


def test_sms_is_delivered_or_undelivered(stack: Stack) -> None:
    ok = stack.post_warning(phone="+8613800138000", risk="low")["case_id"]
    bad = stack.post_warning(phone="+8613800138008", risk="low")["case_id"]
    assert first(settled(stack, ok, "sms"), "sms")["outcome"] == "delivered"
    undelivered = first(settled(stack, bad, "sms"), "sms")
    assert (undelivered["outcome"], undelivered["error_code"]) == ("undelivered", "30003")


def test_only_the_answer_and_the_end_of_a_call_come_back(stack: Stack) -> None:
    # "initiated" and "ringing" told nothing the service used, and each cost a request.
    calls = {"+8613800138006": ["busy"], "+8613800138003": ["in-progress", "completed"]}
    for phone, statuses in calls.items():
        case = settled(stack, stack.post_warning(phone=phone)["case_id"])
        [call] = stack.control("GET", "calls", params={"to": phone})
        detail = stack.control("GET", f"calls/{call['sid']}")
        assert detail["request"]["status_callback_events"] == ["answered", "completed"]
        seen = [
            e["data"]["CallStatus"]
            for e in case["timeline"]
            if e["kind"] == "call.status" and e["data"].get("CallSid") == call["sid"]
        ]
        assert seen == statuses
