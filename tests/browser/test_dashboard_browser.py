"""A real browser against the whole service: the robot escalates, an operator works the case."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from robot.models import Case, Event, Staff
from tests.browser.conftest import OPERATOR_PHONE, make_staff, sign_in
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.browser

#: The emulator's callee for this number answers and presses 3: "I have already paid".
ALREADY_PAID = "+8613800138002"


def settled(stack: Stack, case_id: int) -> dict[str, Any]:
    """Wait until the robot escalated the case and its first SMS and call have outcomes."""

    def check() -> dict[str, Any] | None:
        case = stack.case(case_id)
        first = [a for a in case["attempts"] if a["purpose"] == "warning"]
        done = len(first) == 2 and all(a["outcome"] for a in first)
        return case if done and case["state"] == "escalated" and case["critical"] else None

    return stack.wait_for(check, timeout=30, what="the robot to escalate the case")  # type: ignore[no-any-return]


def open_queue_and_wait_for(page: Page, stack: Stack, case_id: int) -> None:
    row = page.locator(f'#queue tr[data-case-id="{case_id}"]')
    expect(row).to_be_visible(timeout=30_000)


def test_operator_claims_an_escalated_case_and_records_a_disposition(
    dashboard_stack: Stack, new_context: Callable[[], BrowserContext]
) -> None:
    stack = dashboard_stack
    make_staff(stack.sessions, "ana", phone=OPERATOR_PHONE)
    page = new_context().new_page()
    sign_in(page, stack.base_url, "ana")
    expect(page.locator("h1")).to_contain_text("Escalated cases")

    # The warning arrives after the page loaded: the queue picks the case up by itself.
    case_id = stack.post_warning(phone=ALREADY_PAID)["case_id"]
    url_before = page.url
    open_queue_and_wait_for(page, stack, case_id)
    assert page.url == url_before
    row = page.locator(f'#queue tr[data-case-id="{case_id}"]')
    expect(row.locator("td.phone")).to_have_text("+86138****8002")
    expect(row).to_contain_text("critical")
    assert "13800138002" not in page.content()
    settled(stack, case_id)

    row.locator("button.claim-button").click()
    page.wait_for_url(f"{stack.base_url}/dashboard/cases/{case_id}")
    expect(page.locator("#claim-line")).to_contain_text("Yours until")
    expect(page.locator("#phone")).to_have_text("+86138****8002")
    expect(page.locator("#script")).to_contain_text("automated call")

    # Revealing the number is a recorded POST.
    page.click("#reveal")
    expect(page.locator("#phone")).to_have_text(ALREADY_PAID)

    page.select_option("#disposition-choice", "dissuaded")
    page.fill("#disposition-note", "agreed not to transfer again; will call 110")
    page.click("#record-disposition")
    page.wait_for_url(f"{stack.base_url}/dashboard/cases/{case_id}")
    expect(page.locator(".flash-ok")).to_contain_text("Disposition recorded")
    entry = page.locator('#timeline tr[data-kind="case.disposition"]')
    expect(entry).to_have_count(1)
    expect(entry.locator("td.actor")).to_have_text("staff:ana")
    expect(entry).to_contain_text("dissuaded")
    expect(page.locator('#timeline tr[data-kind="phone.revealed"] td.actor')).to_have_text(
        "staff:ana"
    )
    # The robot's own steps are on the same timeline.
    expect(page.locator('#timeline tr[data-kind="call.key"]')).to_contain_text("digits=3")

    with stack.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.disposition == "dissuaded"
        assert case.confirmed_at is not None and case.state == "escalated"
        kinds = session.scalars(
            select(Event.kind).where(Event.case_id == case_id, Event.actor == "staff:ana")
        ).all()
    assert {"case.claimed", "phone.revealed", "case.disposition", "case.confirmed"} <= set(kinds)


def test_a_second_operator_cannot_claim_the_same_case(
    dashboard_stack: Stack, new_context: Callable[[], BrowserContext]
) -> None:
    stack = dashboard_stack
    make_staff(stack.sessions, "ana")
    make_staff(stack.sessions, "ben")
    case_id = stack.post_warning(phone=ALREADY_PAID)["case_id"]
    settled(stack, case_id)
    ana, ben = new_context().new_page(), new_context().new_page()
    sign_in(ana, stack.base_url, "ana")
    sign_in(ben, stack.base_url, "ben")
    open_queue_and_wait_for(ana, stack, case_id)
    open_queue_and_wait_for(ben, stack, case_id)

    ana.locator(f'#queue tr[data-case-id="{case_id}"] button.claim-button').click()
    ana.wait_for_url(f"{stack.base_url}/dashboard/cases/{case_id}")

    # ben's queue updates by itself: the case now shows ana and no claim button.
    ben_row = ben.locator(f'#queue tr[data-case-id="{case_id}"]')
    expect(ben_row.locator("td.claim")).to_have_text("ana")
    expect(ben_row.locator("button.claim-button")).to_have_count(0)
    # On the case page the claim is refused.
    ben.goto(f"{stack.base_url}/dashboard/cases/{case_id}")
    expect(ben.locator("#claimed-by")).to_contain_text("ana")
    ben.click("#claim")
    expect(ben.locator(".flash-error")).to_contain_text("Claimed by ana")
    with stack.sessions() as session:
        holder = session.scalar(
            select(Staff.username)
            .join(Case, Case.assignee_id == Staff.id)
            .where(Case.id == case_id)
        )
    assert holder == "ana"


def test_requests_without_the_csrf_token_are_refused(
    dashboard_stack: Stack, new_context: Callable[[], BrowserContext]
) -> None:
    stack = dashboard_stack
    make_staff(stack.sessions, "ana")
    case_id = stack.post_warning(phone=ALREADY_PAID)["case_id"]
    context = new_context()
    page = context.new_page()
    sign_in(page, stack.base_url, "ana")
    # A form post from the signed-in browser, without the token: refused with a page.
    response = context.request.post(
        f"{stack.base_url}/dashboard/cases/{case_id}/claim", form={"note": "x"}
    )
    assert response.status == 403
    assert "expired" in response.text()
    # A script in the page, without the header: refused with JSON.
    result = page.evaluate(
        """async (url) => {
            const r = await fetch(url, {method: "POST", headers: {"X-Requested-With": "fetch"}});
            return {status: r.status, body: await r.json()};
        }""",
        f"{stack.base_url}/dashboard/cases/{case_id}/claim",
    )
    assert result["status"] == 403
    assert result["body"]["error"]["code"] == "csrf"
    with stack.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.assignee_id is None


def test_operator_calls_the_person_through_the_provider(
    dashboard_stack: Stack, new_context: Callable[[], BrowserContext]
) -> None:
    stack = dashboard_stack
    make_staff(stack.sessions, "ana", phone=OPERATOR_PHONE)
    case_id = stack.post_warning(phone=ALREADY_PAID)["case_id"]
    settled(stack, case_id)
    page = new_context().new_page()
    sign_in(page, stack.base_url, "ana")
    page.goto(f"{stack.base_url}/dashboard/cases/{case_id}")
    expect(page.locator("#actions")).to_contain_text("+86138****8003")  # my own phone, masked
    page.click("#call")
    expect(page.locator(".flash-ok")).to_contain_text("Calling your phone")

    def bridged() -> dict[str, Any] | None:
        case = stack.case(case_id)
        legs = [a for a in case["attempts"] if a["purpose"] == "staff_bridge"]
        put_through = any(e["kind"] == "call.put_through" for e in case["timeline"])
        return case if legs and legs[0]["outcome"] and put_through else None

    case = stack.wait_for(bridged, timeout=30, what="the bridged call")
    leg = next(a for a in case["attempts"] if a["purpose"] == "staff_bridge")
    assert leg["to"] == "+86138****8003" and leg["outcome"] == "answered"
    page.goto(f"{stack.base_url}/dashboard/cases/{case_id}")
    expect(page.locator('#timeline tr[data-kind="call.put_through"]')).to_have_count(1)
    expect(page.locator("#attempts tr.purpose-staff_bridge")).to_contain_text("staff call")
