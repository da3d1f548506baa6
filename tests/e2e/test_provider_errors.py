"""Transient provider errors are retried with backoff; permanent ones stop that channel."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from robot.config import Settings
from tests.e2e.conftest import Stack, start_stack


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    callees = {
        "+8613800138010": "invalid",
        "+8613800138020": "landline",
        "+8613800138030": "opted-out",
    }
    yield from start_stack(settings, callees=callees)


def attempts(stack: Stack, case_id: int, channel: str) -> list[dict[str, Any]]:
    return [a for a in stack.case(case_id)["attempts"] if a["channel"] == channel]


def test_server_errors_are_retried_until_the_call_is_placed(stack: Stack) -> None:
    stack.control("POST", "faults", json={"kind": "calls", "count": 2, "status": 500})
    case_id = stack.post_warning(phone="+8613800138003", risk="medium")["case_id"]
    placed = stack.wait_for(
        lambda: [
            a for a in attempts(stack, case_id, "call") if a["state"] in ("placed", "finished")
        ],
        what="placed call",
    )
    assert placed
    case = stack.case(case_id)
    retries = [e for e in case["timeline"] if e["kind"] == "attempt.retrying"]
    assert len(retries) == 2
    assert all(e["data"]["code"] == 20500 for e in retries)
    creates = [
        r
        for r in stack.control("GET", "requests")
        if r["method"] == "POST" and r["path"].endswith("/Calls.json")
    ]
    assert len(creates) == 3  # two refused, one accepted: never a duplicate call


def test_rate_limited_creates_are_retried(stack: Stack) -> None:
    stack.control(
        "POST", "faults", json={"kind": "messages", "count": 1, "status": 429, "code": 20429}
    )
    case_id = stack.post_warning(phone="+8613800138000", risk="low")["case_id"]
    sms = stack.wait_for(
        lambda: [a for a in attempts(stack, case_id, "sms") if a["outcome"] == "delivered"],
        what="delivered sms",
    )
    assert sms
    assert any(
        e["kind"] == "attempt.retrying" and e["data"]["code"] == 20429
        for e in stack.case(case_id)["timeline"]
    )


def test_an_invalid_number_stops_both_channels(stack: Stack) -> None:
    case_id = stack.post_warning(phone="+8613800138010")["case_id"]
    case = stack.wait_for(
        lambda: (c := stack.case(case_id))["state"] == "escalated" and c, what="escalated"
    )
    failed = [a for a in case["attempts"] if a["state"] == "failed"]
    assert {a["error_code"] for a in failed} == {"21211"}
    blocked = [e for e in case["timeline"] if e["kind"] == "channel.blocked"]
    assert blocked and set(blocked[0]["data"]["channels"]) == {"sms", "call"}
    assert not [e for e in case["timeline"] if e["kind"] == "attempt.retrying"]


@pytest.mark.parametrize(
    ("number", "code"), [("+8613800138020", "21614"), ("+8613800138030", "21610")]
)
def test_a_landline_or_opted_out_number_stops_sms_but_still_gets_the_call(
    stack: Stack, number: str, code: str
) -> None:
    case_id = stack.post_warning(phone=number)["case_id"]
    sms = stack.wait_for(
        lambda: [a for a in attempts(stack, case_id, "sms") if a["state"] == "failed"],
        what="failed sms",
    )
    assert sms[0]["error_code"] == code
    call = stack.wait_for(
        lambda: [a for a in attempts(stack, case_id, "call") if a["outcome"]], what="call outcome"
    )
    assert call[0]["outcome"] == "confirmed"  # the number ends in 0: answers and presses 1
