"""People text or call the robot's number back (through the emulator's control API)."""

from __future__ import annotations

from tests.e2e.conftest import Stack

ROBOT_NUMBER = "+15005550006"


def kinds(stack: Stack, case_id: int) -> list[str]:
    return [e["kind"] for e in stack.case(case_id)["timeline"]]


def test_an_sms_reply_that_confirms_stops_the_robot(stack: Stack) -> None:
    # Callee 3 answers without pressing anything: only the SMS reply can confirm.
    case_id = stack.post_warning(phone="+8613800138003", risk="medium")["case_id"]
    stack.wait_for(lambda: "attempt.placed" in kinds(stack, case_id), what="placed")
    answer = stack.control(
        "POST", "inbound/sms", json={"from": "+8613800138003", "to": ROBOT_NUMBER, "body": "收到"}
    )
    assert answer["status_code"] == 200
    case = stack.case(case_id)
    assert any(
        e["kind"] == "case.confirmed" and e["data"]["channel"] == "sms" for e in case["timeline"]
    )
    assert not [
        a
        for a in case["attempts"]
        if a["state"] == "scheduled" and a["purpose"] in ("warning", "retry")
    ]


def test_any_other_reply_goes_to_a_human(stack: Stack) -> None:
    case_id = stack.post_warning(phone="+8613800138005", risk="medium")["case_id"]
    stack.wait_for(lambda: "attempt.placed" in kinds(stack, case_id), what="placed")
    stack.control(
        "POST",
        "inbound/sms",
        json={"from": "+8613800138005", "to": ROBOT_NUMBER, "body": "who is this?"},
    )
    case = stack.case(case_id)
    assert case["state"] == "escalated"
    inbound = next(e for e in case["timeline"] if e["kind"] == "sms.inbound")
    assert inbound["data"]["Body"] == "who is this?"


def test_a_caller_with_a_case_hears_their_warning_and_can_confirm(stack: Stack) -> None:
    case_id = stack.post_warning(phone="+8613800138005", risk="medium")["case_id"]
    call = stack.control(
        "POST", "inbound/call", json={"from": "+8613800138005", "to": ROBOT_NUMBER, "digits": "1"}
    )
    stack.control("GET", f"calls/{call['sid']}", params={"wait": 15})
    stack.wait_for(lambda: "case.confirmed" in kinds(stack, case_id), what="confirmed")


def test_a_caller_without_a_case_hears_a_general_message_and_can_reach_an_officer(
    stack: Stack,
) -> None:
    call = stack.control(
        "POST", "inbound/call", json={"from": "+8613700137000", "to": ROBOT_NUMBER, "digits": "2"}
    )
    detail = stack.control("GET", f"calls/{call['sid']}", params={"wait": 15})
    assert detail["status"] == "completed"
    legs = stack.control("GET", "calls", params={"to": stack.settings.center.call_center_number})
    assert len(legs) == 1  # put through to the call center
