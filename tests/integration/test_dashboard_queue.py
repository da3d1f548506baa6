"""The queue: order, masking, area scoping, filters, SLA deadlines; exclusive claims."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from robot.config import Settings
from robot.dashboard import claims
from robot.dashboard.identity import CurrentStaff
from robot.models import Case, Event, Staff, utcnow
from robot.sources import NewSource
from tests.integration.test_dashboard_support import (
    FETCH,
    cheap_hashes,
    fast,
    local_input,
    login,
    make_case,
    make_staff,
    post,
    token,
)


@pytest.fixture
def settings(settings: Settings, database_url: str) -> Settings:
    return fast(settings)


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_hashes(monkeypatch)


def queue(client: FlaskClient, query: str = "") -> dict[str, object]:
    response = client.get(f"/dashboard/queue.json{query}")
    assert response.status_code == 200, response.data
    data: dict[str, object] = response.get_json()
    return data


def ids(data: dict[str, object]) -> list[int]:
    rows = data["rows"]
    assert isinstance(rows, list)
    return [row["id"] for row in rows]


def test_most_urgent_first_with_waits_and_deadlines(
    client: FlaskClient,
    sessions: sessionmaker[Session],
    source: NewSource,
    settings: Settings,
) -> None:
    make_staff(sessions, "ana")
    low_old = make_case(
        sessions, source, "+8613900000001", risk="low", escalated_ago=timedelta(minutes=40)
    )
    high_new = make_case(sessions, source, "+8613900000002", escalated_ago=timedelta(minutes=1))
    high_old = make_case(sessions, source, "+8613900000003", escalated_ago=timedelta(minutes=9))
    critical = make_case(sessions, source, "+8613900000004", critical=True, risk="medium")
    medium = make_case(sessions, source, "+8613900000005", risk="medium")
    not_escalated = make_case(sessions, source, "+8613900000006", escalated_ago=None)
    login(client, "ana")
    data = queue(client)
    assert ids(data) == [critical, high_old, high_new, medium, low_old]
    assert not_escalated not in ids(data)
    rows = {row["id"]: row for row in data["rows"]}  # type: ignore[union-attr]
    assert rows[critical]["urgency"] == "critical"
    # high risk: 5 minutes from escalation; escalated 9 minutes ago, so 4 minutes overdue.
    assert rows[high_old]["overdue"] is True
    assert -4 * 60 - 5 <= rows[high_old]["deadline_seconds"] <= -4 * 60 + 5
    assert 9 * 60 - 5 <= rows[high_old]["waited_seconds"] <= 9 * 60 + 5
    assert rows[high_new]["overdue"] is False
    expected = settings.dashboard.sla_low_minutes * 60 - 40 * 60
    assert abs(rows[low_old]["deadline_seconds"] - expected) <= 5


def test_numbers_are_masked_in_the_queue(
    client: FlaskClient, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "ana")
    make_case(sessions, source, "+8613912345678")
    login(client, "ana")
    body = client.get("/dashboard/queue.json").get_data(as_text=True)
    page = client.get("/dashboard/").get_data(as_text=True)
    for text in (body, page):
        assert "13912345678" not in text
        assert "+86139****5678" in text


def test_operators_see_only_their_area(
    app: Flask, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "east-op", area="east")
    make_staff(sessions, "any-op")
    make_staff(sessions, "boss", role="supervisor", area="east")
    east = make_case(sessions, source, "+8613900000011", area="east")
    west = make_case(sessions, source, "+8613900000012", area="west")
    nowhere = make_case(sessions, source, "+8613900000013")
    clients = {}
    for name in ("east-op", "any-op", "boss"):
        clients[name] = app.test_client()
        login(clients[name], name)
    assert ids(queue(clients["east-op"])) == [east]
    # The URL cannot widen an operator's view.
    assert ids(queue(clients["east-op"], "?area=west")) == [east]
    assert sorted(ids(queue(clients["any-op"]))) == sorted([east, west, nowhere])
    assert sorted(ids(queue(clients["boss"]))) == sorted([east, west, nowhere])
    assert ids(queue(clients["boss"], "?area=west")) == [west]
    # Another area's case looks like a missing one, for pages and for actions.
    assert clients["east-op"].get(f"/dashboard/cases/{west}").status_code == 404
    assert post(clients["east-op"], f"/dashboard/cases/{west}/claim").status_code == 404
    assert post(clients["east-op"], f"/dashboard/cases/{west}/reveal").status_code == 404
    assert clients["east-op"].get(f"/dashboard/cases/{east}").status_code == 200


def test_filters_by_state_and_claim(
    client: FlaskClient, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "ana")
    mine = make_case(sessions, source, "+8613900000021")
    free = make_case(sessions, source, "+8613900000022")
    robot_working = make_case(sessions, source, "+8613900000023", escalated_ago=None)
    login(client, "ana")
    assert post(client, f"/dashboard/cases/{mine}/claim").status_code == 200
    assert ids(queue(client, "?claim=mine")) == [mine]
    assert ids(queue(client, "?claim=unclaimed")) == [free]
    assert ids(queue(client, "?state=open")) == [robot_working]
    assert queue(client, "?state=bogus")["filters"] == {"state": "escalated", "claim": "any"}


def test_drill_cases_carry_a_badge(
    client: FlaskClient, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "ana")
    drill = make_case(sessions, source, "+8613800138005", drill=True)
    login(client, "ana")
    row = queue(client)["rows"][0]  # type: ignore[index]
    assert row["id"] == drill and row["drill"] is True
    assert "DRILL" in client.get("/dashboard/").get_data(as_text=True)
    assert "DRILL" in client.get(f"/dashboard/cases/{drill}").get_data(as_text=True)


def test_callbacks_due_show_in_the_queue(
    client: FlaskClient, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "ana")
    case_id = make_case(sessions, source, "+8613900000031")
    login(client, "ana")
    due = local_input(utcnow() + timedelta(minutes=10))
    response = post(
        client, f"/dashboard/cases/{case_id}/callback", due_at=due, owner="anyone", note="ring"
    )
    assert response.status_code == 200, response.data
    callbacks = queue(client)["callbacks"]
    assert isinstance(callbacks, list) and len(callbacks) == 1
    assert callbacks[0]["case_id"] == case_id and callbacks[0]["note"] == "ring"
    assert callbacks[0]["owner"] is None


# --- claims -------------------------------------------------------------------------------------


def test_a_claimed_case_cannot_be_claimed_by_another_operator(
    app: Flask, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "ana")
    make_staff(sessions, "ben")
    case_id = make_case(sessions, source, "+8613900000041")
    ana, ben = app.test_client(), app.test_client()
    login(ana, "ana")
    login(ben, "ben")
    assert post(ana, f"/dashboard/cases/{case_id}/claim").status_code == 200
    refused = post(ben, f"/dashboard/cases/{case_id}/claim")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "claimed"
    assert "ana" in refused.get_json()["error"]["message"]
    # Nor can ben act on it.
    assert post(ben, f"/dashboard/cases/{case_id}/sms", template="warning_sms").status_code == 409
    # As a page: back to the case with the reason.
    page = post(ben, f"/dashboard/cases/{case_id}/claim", json=False)
    assert page.status_code == 303
    assert "Claimed by ana" in ben.get(page.headers["Location"]).get_data(as_text=True)
    # Claiming my own case again just refreshes it, without a second event.
    assert post(ana, f"/dashboard/cases/{case_id}/claim").status_code == 200
    with sessions() as session:
        kinds = session.scalars(
            select(Event.kind).where(Event.case_id == case_id, Event.kind == "case.claimed")
        ).all()
    assert kinds == ["case.claimed"]


def test_an_expired_claim_can_be_taken(
    app: Flask, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "ana")
    make_staff(sessions, "ben")
    case_id = make_case(sessions, source, "+8613900000042")
    ana, ben = app.test_client(), app.test_client()
    login(ana, "ana")
    login(ben, "ben")
    assert post(ana, f"/dashboard/cases/{case_id}/claim").status_code == 200
    with sessions.begin() as session:
        session.execute(update(Case).values(claim_expires_at=utcnow() - timedelta(seconds=1)))
    assert post(ben, f"/dashboard/cases/{case_id}/claim").status_code == 200
    with sessions() as session:
        event = session.scalars(
            select(Event).where(Event.kind == "case.claimed").order_by(Event.id.desc())
        ).first()
    assert event is not None and event.actor == "staff:ben"
    assert event.data["previous"] == "ana"


def test_activity_keeps_the_claim(
    client: FlaskClient, sessions: sessionmaker[Session], source: NewSource, settings: Settings
) -> None:
    make_staff(sessions, "ana")
    case_id = make_case(sessions, source, "+8613900000043")
    login(client, "ana")
    post(client, f"/dashboard/cases/{case_id}/claim")
    with sessions.begin() as session:
        session.execute(update(Case).values(claim_expires_at=utcnow() + timedelta(minutes=1)))
    assert (
        post(client, f"/dashboard/cases/{case_id}/sms", template="warning_sms").status_code == 200
    )
    with sessions() as session:
        expires = session.scalar(select(Case.claim_expires_at))
    assert expires is not None
    assert expires > utcnow() + timedelta(minutes=settings.dashboard.claim_minutes - 1)


def test_release_and_supervisor_reassign(
    app: Flask, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "ana")
    ben_id = make_staff(sessions, "ben")
    make_staff(sessions, "west-op", area="west")
    make_staff(sessions, "boss", role="supervisor")
    case_id = make_case(sessions, source, "+8613900000044", area="east")
    ana, boss = app.test_client(), app.test_client()
    login(ana, "ana")
    login(boss, "boss")
    post(ana, f"/dashboard/cases/{case_id}/claim")
    # Operators may not reassign.
    assert (
        post(ana, f"/dashboard/cases/{case_id}/reassign", staff_id=str(ben_id)).status_code == 403
    )
    assert (
        post(boss, f"/dashboard/cases/{case_id}/reassign", staff_id=str(ben_id)).status_code == 200
    )
    with sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.assignee_id == ben_id
        event = session.scalars(select(Event).where(Event.kind == "case.reassigned")).one()
        assert (event.actor, event.data) == ("staff:boss", {"from": "ana", "to": "ben"})
        west_id = session.scalar(select(Staff.id).where(Staff.username == "west-op"))
    # Not to someone who cannot see the case's area.
    assert (
        post(boss, f"/dashboard/cases/{case_id}/reassign", staff_id=str(west_id)).status_code == 400
    )
    # ana's release of a case that is now ben's changes nothing.
    assert post(ana, f"/dashboard/cases/{case_id}/release").get_json()["released"] is False
    with sessions() as session:
        assert session.scalar(select(Case.assignee_id).where(Case.id == case_id)) == ben_id
    # Back to the queue.
    assert post(boss, f"/dashboard/cases/{case_id}/reassign", staff_id="").status_code == 200
    post(ana, f"/dashboard/cases/{case_id}/claim")
    assert post(ana, f"/dashboard/cases/{case_id}/release").get_json()["released"] is True
    with sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.assignee_id is None
        kinds = session.scalars(select(Event.kind).where(Event.case_id == case_id)).all()
    assert "case.released" in kinds


def test_two_operators_claiming_at_once_exactly_one_wins(
    app: Flask, sessions: sessionmaker[Session], source: NewSource
) -> None:
    names = [f"op{i}" for i in range(4)]
    for name in names:
        make_staff(sessions, name)
    clients = {name: app.test_client() for name in names}
    for name, client in clients.items():
        login(client, name)
    tokens = {name: token(client) for name, client in clients.items()}
    for round_ in range(5):
        case_id = make_case(sessions, source, f"+861390000005{round_}")
        barrier = threading.Barrier(len(names))
        results: dict[str, int] = {}

        def claim(
            name: str,
            case_id: int = case_id,
            barrier: threading.Barrier = barrier,
            results: dict[str, int] = results,
        ) -> None:
            barrier.wait()
            response = clients[name].post(
                f"/dashboard/cases/{case_id}/claim",
                data={"csrf_token": tokens[name]},
                headers=FETCH,
            )
            results[name] = response.status_code

        threads = [threading.Thread(target=claim, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(results.values()) == [200, 409, 409, 409], results
        winner = next(name for name, status in results.items() if status == 200)
        with sessions() as session:
            case = session.get(Case, case_id)
            assert case is not None
            holder = session.get(Staff, case.assignee_id)
            assert holder is not None and holder.username == winner
            claimed = session.scalars(
                select(Event.actor).where(Event.case_id == case_id, Event.kind == "case.claimed")
            ).all()
            assert claimed == [f"staff:{winner}"]


def test_claim_function_race_on_separate_sessions(
    sessions: sessionmaker[Session], source: NewSource
) -> None:
    """The conditional UPDATE itself: many sessions, one winner."""
    people = [
        CurrentStaff(
            make_staff(sessions, f"p{i}"), f"p{i}", f"p{i}", "operator", None, "en-US", None
        )
        for i in range(6)
    ]
    case_id = make_case(sessions, source, "+8613900000060")
    barrier = threading.Barrier(len(people))
    outcomes: list[claims.ClaimStatus] = []
    lock = threading.Lock()

    def run(person: CurrentStaff) -> None:
        barrier.wait()
        with sessions.begin() as session:
            result = claims.claim(session, case_id, person, utcnow(), timedelta(minutes=5))
        with lock:
            outcomes.append(result.status)

    threads = [threading.Thread(target=run, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == sorted([claims.ClaimStatus.WON] + [claims.ClaimStatus.TAKEN] * 5)
