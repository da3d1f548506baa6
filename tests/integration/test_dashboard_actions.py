"""Staff actions on a case: each through casework, on the timeline, fed back to the source."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from robot.config import Settings
from robot.models import (
    Attempt,
    Callback,
    Case,
    Contact,
    Event,
    HomeVisit,
    OutboxMessage,
    utcnow,
)
from robot.sources import NewSource
from tests.integration.test_dashboard_support import (
    cheap_hashes,
    fast,
    local_input,
    login,
    make_case,
    make_staff,
    post,
)

PHONE = "+8613912345678"
OWN_PHONE = "+8613800138003"


@pytest.fixture
def settings(settings: Settings, database_url: str) -> Settings:
    return fast(settings)


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_hashes(monkeypatch)


@pytest.fixture
def case_id(sessions: sessionmaker[Session], source: NewSource) -> int:
    return make_case(sessions, source, PHONE, contacts=["+8613800138000", "+8613800138009"])


@pytest.fixture
def ana(client: FlaskClient, sessions: sessionmaker[Session]) -> FlaskClient:
    make_staff(sessions, "ana", phone=OWN_PHONE)
    login(client, "ana")
    return client


def timeline(sessions: sessionmaker[Session], case_id: int) -> list[Event]:
    with sessions() as session:
        return list(
            session.scalars(select(Event).where(Event.case_id == case_id).order_by(Event.id))
        )


def outbox(sessions: sessionmaker[Session], case_id: int) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage.kind)
                .where(OutboxMessage.case_id == case_id)
                .order_by(OutboxMessage.created_at)
            )
        )


def load(sessions: sessionmaker[Session], case_id: int) -> Case:
    with sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case


def test_case_page_shows_the_case_masked_with_script_and_timeline(
    ana: FlaskClient, case_id: int
) -> None:
    page = ana.get(f"/dashboard/cases/{case_id}").get_data(as_text=True)
    assert "+86139****5678" in page
    assert "13912345678" not in page
    assert "impersonating police or officials" in page  # fraud type, in the staff's language
    assert "automated call" in page  # the warning_call script, rendered in English
    assert "escalated to the call center" in page  # timeline entry
    assert "+86138****8000" in page  # contacts are masked too


def test_reveal_is_a_recorded_post(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    assert ana.get(f"/dashboard/cases/{case_id}/reveal").status_code == 405
    response = post(ana, f"/dashboard/cases/{case_id}/reveal")
    assert response.get_json() == {"case_id": case_id, "phone": PHONE}
    as_page = post(ana, f"/dashboard/cases/{case_id}/reveal", json=False)
    assert PHONE in as_page.get_data(as_text=True)
    reveals = [e for e in timeline(sessions, case_id) if e.kind == "phone.revealed"]
    assert [e.actor for e in reveals] == ["staff:ana", "staff:ana"]
    assert PHONE not in str(reveals[0].data)  # the event itself keeps it masked


def test_event_data_is_redacted_on_the_page(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    from robot.timeline import record

    with sessions.begin() as session:
        record(session, case_id, "sms.inbound", "person", {"From": PHONE, "Body": f"call {PHONE}"})
    page = ana.get(f"/dashboard/cases/{case_id}").get_data(as_text=True)
    assert "13912345678" not in page
    assert "call +86139****5678" in page


def test_call_bridges_the_operator_first(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    response = post(ana, f"/dashboard/cases/{case_id}/call")
    assert response.status_code == 200, response.data
    with sessions() as session:
        attempt = session.scalars(select(Attempt).where(Attempt.purpose == "staff_bridge")).one()
        staff_id = session.scalar(select(Case.assignee_id).where(Case.id == case_id))
    assert (attempt.channel, attempt.to_phone, attempt.template) == (
        "call",
        OWN_PHONE,
        "staff_bridge",
    )
    assert attempt.staff_id == staff_id and attempt.state == "scheduled"
    assert attempt.due_at <= utcnow()
    scheduled = [e for e in timeline(sessions, case_id) if e.kind == "attempt.scheduled"]
    assert scheduled[-1].actor == "staff:ana"
    assert scheduled[-1].attempt_id == attempt.id


def test_call_needs_the_operators_own_phone(
    client: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    make_staff(sessions, "nophone")
    login(client, "nophone")
    response = post(client, f"/dashboard/cases/{case_id}/call")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "no_phone"


def test_sms_to_the_person(ana: FlaskClient, sessions: sessionmaker[Session], case_id: int) -> None:
    assert post(ana, f"/dashboard/cases/{case_id}/sms", template="voicemail").status_code == 400
    assert post(ana, f"/dashboard/cases/{case_id}/sms", template="warning_sms").status_code == 200
    with sessions() as session:
        attempt = session.scalars(select(Attempt).where(Attempt.purpose == "staff_sms")).one()
    assert (attempt.channel, attempt.to_phone, attempt.template) == ("sms", PHONE, "warning_sms")


def test_notify_contacts_and_home_visit_go_through_casework(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    assert post(ana, f"/dashboard/cases/{case_id}/notify-contacts").status_code == 200
    assert (
        post(ana, f"/dashboard/cases/{case_id}/home-visit", note="elderly, alone").status_code
        == 200
    )
    with sessions() as session:
        notices = session.scalars(select(Attempt).where(Attempt.purpose == "contact_notice")).all()
        contacts = session.scalars(select(Contact.phone)).all()
        visit = session.scalars(select(HomeVisit)).one()
    assert sorted(a.to_phone for a in notices) == sorted(contacts * 2)  # SMS and call each
    assert visit.requested_by == "staff:ana"
    assert visit.summary["reason"] == "elderly, alone"
    kinds = {(e.kind, e.actor) for e in timeline(sessions, case_id)}
    assert ("contacts.notified", "staff:ana") in kinds
    assert ("home_visit.requested", "staff:ana") in kinds
    assert ("disclosure", "staff:ana") in kinds
    assert "case.home_visit_requested" in outbox(sessions, case_id)


def test_notify_without_contacts_is_refused(
    ana: FlaskClient, sessions: sessionmaker[Session], source: NewSource
) -> None:
    lonely = make_case(sessions, source, "+8613900000099")
    response = post(ana, f"/dashboard/cases/{lonely}/notify-contacts")
    assert response.status_code == 400


def test_callback_for_me_or_anyone(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    due = local_input(utcnow() + timedelta(hours=2))
    assert (
        post(ana, f"/dashboard/cases/{case_id}/callback", due_at=due, owner="me").status_code == 200
    )
    assert (
        post(ana, f"/dashboard/cases/{case_id}/callback", due_at=due, owner="anyone").status_code
        == 200
    )
    assert post(ana, f"/dashboard/cases/{case_id}/callback", due_at="tomorrow").status_code == 400
    with sessions() as session:
        callbacks = session.scalars(select(Callback).order_by(Callback.id)).all()
        ana_id = session.scalar(select(Case.assignee_id))
    assert [c.owner_id for c in callbacks] == [ana_id, None]
    assert abs((callbacks[0].due_at - (utcnow() + timedelta(hours=2))).total_seconds()) < 120
    events = [e for e in timeline(sessions, case_id) if e.kind == "callback.scheduled"]
    assert [e.data["owner"] for e in events] == ["ana", "anyone"]
    assert post(ana, f"/dashboard/callbacks/{callbacks[0].id}/done").status_code == 200
    with sessions() as session:
        assert session.get(Callback, callbacks[0].id).done_at is not None  # type: ignore[union-attr]


def test_still_believes_keeps_the_case_in_the_queue(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    response = post(
        ana,
        f"/dashboard/cases/{case_id}/disposition",
        disposition="still_believes",
        note="says the officer is real",
    )
    assert response.status_code == 200, response.data
    case = load(sessions, case_id)
    assert (case.state, case.disposition, case.confirmed_at) == (
        "escalated",
        "still_believes",
        None,
    )
    event = [e for e in timeline(sessions, case_id) if e.kind == "case.disposition"][-1]
    assert event.actor == "staff:ana"
    assert event.data == {"disposition": "still_believes", "note": "says the officer is real"}
    assert "case.disposition" in outbox(sessions, case_id)
    rows = ana.get("/dashboard/queue.json").get_json()["rows"]
    assert [r["id"] for r in rows] == [case_id]
    # It can never close a case.
    refused = post(ana, f"/dashboard/cases/{case_id}/close", disposition="still_believes")
    assert refused.status_code == 400
    assert load(sessions, case_id).state == "escalated"


def test_dissuaded_stops_the_robot_but_leaves_closing_to_staff(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    assert (
        post(ana, f"/dashboard/cases/{case_id}/disposition", disposition="dissuaded").status_code
        == 200
    )
    case = load(sessions, case_id)
    assert case.state == "escalated" and case.confirmed_at is not None
    assert {"case.reached", "case.disposition"} <= set(outbox(sessions, case_id))


def test_already_paid_makes_the_case_critical(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    assert (
        post(ana, f"/dashboard/cases/{case_id}/disposition", disposition="already_paid").status_code
        == 200
    )
    case = load(sessions, case_id)
    assert (case.state, case.critical, case.disposition) == ("escalated", True, "already_paid")
    assert ana.get("/dashboard/queue.json").get_json()["rows"][0]["urgency"] == "critical"


def test_close_requires_a_disposition(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    assert post(ana, f"/dashboard/cases/{case_id}/close").status_code == 400
    assert post(ana, f"/dashboard/cases/{case_id}/close", disposition="warned").status_code == 400
    assert load(sessions, case_id).state == "escalated"
    response = post(
        ana, f"/dashboard/cases/{case_id}/close", disposition="dissuaded", note="will not pay"
    )
    assert response.status_code == 200
    case = load(sessions, case_id)
    assert (case.state, case.disposition, case.disposition_note) == (
        "closed",
        "dissuaded",
        "will not pay",
    )
    assert case.assignee_id is None and case.open_key is None
    closed = [e for e in timeline(sessions, case_id) if e.kind == "case.closed"]
    assert [(e.actor, e.data["disposition"]) for e in closed] == [("staff:ana", "dissuaded")]
    assert "case.closed" in outbox(sessions, case_id)
    assert case.next_review_at is not None  # the worker schedules the follow-ups
    # A closed case takes no more actions except a callback.
    assert post(ana, f"/dashboard/cases/{case_id}/sms", template="warning_sms").status_code == 409
    due = local_input(utcnow() + timedelta(days=1))
    assert post(ana, f"/dashboard/cases/{case_id}/callback", due_at=due).status_code == 200


def test_form_errors_come_back_on_the_case_page(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int
) -> None:
    response = post(ana, f"/dashboard/cases/{case_id}/close", json=False)
    assert response.status_code == 303
    page = ana.get(response.headers["Location"]).get_data(as_text=True)
    assert "Choose a disposition." in page


def test_actions_wake_the_worker(
    ana: FlaskClient, sessions: sessionmaker[Session], case_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robot.wakeup import Waker

    woken: list[str] = []
    monkeypatch.setattr(Waker, "after_commit", lambda self: woken.append("wake"))
    post(ana, f"/dashboard/cases/{case_id}/sms", template="warning_sms")
    assert woken == ["wake"]
