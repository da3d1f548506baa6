"""The intake API on SQLite and PostgreSQL: every answer, every error class, the races."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from robot.app import Services, create_app
from robot.config import Settings
from robot.intake.validation import LANGUAGE_MAX
from robot.models import Case, Contact, Event, IncomingWarning
from robot.sources import NewSource, add_source, body_signature, revoke_source

PHONE = "+8613800138000"


def warning(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "external_id": "w-1",
        "phone": "138 0013 8000",
        "risk": "high",
        "fraud_type": "fake_police",
        "trigger": "fraud_call",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def post(client: FlaskClient, auth: dict[str, str], body: Any, **kw: Any) -> Any:
    return client.post("/api/v1/warnings", json=body, headers=auth, **kw)


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_it_opens_a_case_for_a_new_warning(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    response = post(
        client,
        auth,
        warning(contacts=[{"phone": "13900139000", "relation": "parent", "name": "Mum"}]),
    )
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "created"
    with sessions() as session:
        case = session.get(Case, body["case_id"])
        assert case is not None
        assert (case.phone, case.risk, case.fraud_type, case.state) == (
            PHONE,
            "high",
            "fake_police",
            "open",
        )
        assert case.timezone == "Asia/Shanghai"
        assert case.next_review_at is not None  # the worker picks it up at once
        stored = session.scalars(select(IncomingWarning)).one()
        assert stored.payload["phone"] == "138 0013 8000"  # verbatim, not normalised
        contact = session.scalars(select(Contact)).one()
        assert (contact.phone, contact.relation) == ("+8613900139000", "parent")
        kinds = [e.kind for e in session.scalars(select(Event).order_by(Event.id))]
        assert kinds == ["case.opened", "warning.received"]


def test_it_returns_the_same_case_for_a_repeated_external_id(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    first = post(client, auth, warning())
    again = post(client, auth, warning(risk="low"))
    assert again.status_code == 200
    assert again.get_json() == {
        "status": "duplicate",
        "http_status": 200,
        "case_id": first.get_json()["case_id"],
    }
    assert count(sessions, Case) == 1
    assert count(sessions, IncomingWarning) == 1


def test_the_same_external_id_from_another_source_is_a_new_warning(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        other = add_source(session, "bank")
    first = post(client, auth, warning()).get_json()
    second = post(client, {"Authorization": f"Bearer {other.api_key}"}, warning())
    assert second.status_code == 202
    assert second.get_json()["status"] == "merged"  # same number, open case
    assert second.get_json()["case_id"] == first["case_id"]
    assert count(sessions, IncomingWarning) == 2


def test_it_merges_into_the_open_case_and_raises_the_risk(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    first = post(client, auth, warning(external_id="a", risk="low", area=None)).get_json()
    merged = post(
        client, auth, warning(external_id="b", phone="+86 138-0013-8000", risk="high", area="Xihu")
    )
    assert merged.status_code == 202
    assert merged.get_json() == {
        "status": "merged",
        "http_status": 202,
        "case_id": first["case_id"],
    }
    lower = post(client, auth, warning(external_id="c", risk="medium"))
    assert lower.get_json()["case_id"] == first["case_id"]
    with sessions() as session:
        case = session.get(Case, first["case_id"])
        assert case is not None
        assert case.risk == "high"  # raised by b, not lowered by c
        assert case.area == "Xihu"
        merges = session.scalars(
            select(Event).where(Event.kind == "case.merged").order_by(Event.id)
        ).all()
        assert merges[0].data["risk"] == ["low", "high"]
        assert "risk" not in merges[1].data
    assert count(sessions, Case) == 1


def test_a_closed_case_does_not_absorb_new_warnings(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    first = post(client, auth, warning(external_id="a")).get_json()
    with sessions.begin() as session:
        case = session.get(Case, first["case_id"])
        assert case is not None
        case.state, case.open_key = "closed", None
    second = post(client, auth, warning(external_id="b")).get_json()
    assert second["status"] == "created"
    assert second["case_id"] != first["case_id"]


@pytest.fixture
def two_processes(app: Flask, settings: Settings) -> Iterator[list[Flask]]:
    """The app and a second one on its own engine and intake writer, as two web processes are:
    within one process the intake writer serialises writes, so races happen between processes."""
    other = create_app(settings)
    yield [app, other]
    services(other).engine.dispose()


def services(app: Flask) -> Services:
    found: Services = app.extensions["robot"]
    return found


def _race(apps: list[Flask], auth: dict[str, str], bodies: list[Any]) -> list[Any]:
    barrier = threading.Barrier(len(bodies))
    results: list[Any] = [None] * len(bodies)

    def send(i: int) -> None:
        client = apps[i % len(apps)].test_client()
        barrier.wait()
        response = client.post("/api/v1/warnings", json=bodies[i], headers=auth)
        results[i] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_duplicates_make_one_case(
    two_processes: list[Flask], auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    results = _race(two_processes, auth, [warning()] * 8)
    statuses = sorted(code for code, _ in results)
    assert statuses == [200] * 7 + [202]
    assert len({body["case_id"] for _, body in results}) == 1
    assert count(sessions, Case) == 1
    assert count(sessions, IncomingWarning) == 1


def test_concurrent_warnings_for_one_number_share_one_case(
    two_processes: list[Flask], auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    bodies = [warning(external_id=f"w-{i}", risk=("high" if i == 3 else "low")) for i in range(6)]
    results = _race(two_processes, auth, bodies)
    assert all(code == 202 for code, _ in results)
    assert sorted(body["status"] for _, body in results) == ["created"] + ["merged"] * 5
    assert count(sessions, Case) == 1
    assert count(sessions, IncomingWarning) == 6
    with sessions() as session:
        assert session.scalars(select(Case.risk)).one() == "high"


def test_a_batch_accepts_the_good_items_and_names_the_bad_ones(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    batch = {
        "warnings": [
            warning(external_id="ok-1", phone="13800138001"),
            warning(external_id="bad-1", phone="12345"),
            warning(external_id="ok-2", phone="+14155552671", risk="medium"),
            {
                "phone": "13800138003",
                "fraud_type": "lottery",
                "contacts": [{"phone": "1", "relation": "boss"}],
            },
            "not an object",
            warning(external_id="ok-1", phone="13800138001"),
        ]
    }
    response = post(client, auth, batch)
    assert response.status_code == 202
    body = response.get_json()
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (2, 3, 1)
    results = body["results"]
    assert [r["status"] for r in results] == [
        "created",
        "rejected",
        "created",
        "rejected",
        "rejected",
        "duplicate",
    ]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4, 5]
    assert results[1]["errors"] == [
        {"field": "warnings[1].phone", "message": "is not a valid phone number", "index": 1}
    ]
    fields = {e["field"] for e in results[3]["errors"]}
    assert fields == {
        "warnings[3].external_id",
        "warnings[3].fraud_type",
        "warnings[3].contacts[0].phone",
        "warnings[3].contacts[0].relation",
    }
    assert results[4]["errors"][0]["field"] == "warnings[4].(item)"
    assert results[5]["case_id"] == results[0]["case_id"]
    assert count(sessions, Case) == 2


def test_a_batch_with_nothing_valid_is_422_and_stores_nothing(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    response = post(client, auth, {"warnings": [warning(phone="x"), warning(risk="extreme")]})
    assert response.status_code == 422
    body = response.get_json()
    assert {f["field"] for f in body["error"]["fields"]} == {
        "warnings[0].phone",
        "warnings[1].risk",
    }
    assert count(sessions, Case) == 0


def test_each_invalid_field_is_named(client: FlaskClient, auth: dict[str, str]) -> None:
    cases = [
        ({"phone": PHONE}, "external_id"),
        (warning(phone=None), "phone"),
        (warning(phone="+86 000"), "phone"),
        (warning(phone=12345), "phone"),
        (warning(risk="urgent"), "risk"),
        (warning(fraud_type="lottery"), "fraud_type"),
        (warning(trigger="dream"), "trigger"),
        (warning(language="chinese please"), "language"),
        (warning(language="zho-Hans-12345678-abcdefgh"), "language"),  # a tag, too long
        (warning(occurred_at="yesterday"), "occurred_at"),
        (warning(occurred_at="2026-01-01T10:00:00"), "occurred_at"),
        (warning(occurred_at="2999-01-01T10:00:00Z"), "occurred_at"),
        (warning(name="x" * 201), "name"),
        (warning(note=["a"]), "note"),
        (warning(contacts={"phone": PHONE}), "contacts"),
        (warning(contacts=[{"phone": "13900139000"}]), "contacts[0].relation"),
        (
            warning(contacts=[{"phone": "13900139000", "relation": "parent", "age": 3}]),
            "contacts[0].age",
        ),
        (warning(colour="red"), "colour"),
        (warning(external_id=True), "external_id"),
    ]
    for body, field in cases:
        response = post(client, auth, body)
        assert response.status_code == 422, (body, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "invalid_fields"
        assert field in {f["field"] for f in error["fields"]}, (field, error)


def test_authentication_failures_are_401_naming_the_header(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session], source: NewSource
) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer wr_unknown"}):
        response = client.post("/api/v1/warnings", json=warning(), headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["field"] == "Authorization"
    with sessions.begin() as session:
        revoke_source(session, source.source.name)
    assert post(client, auth, warning()).status_code == 401
    assert count(sessions, Case) == 0


def test_malformed_json_is_400(client: FlaskClient, auth: dict[str, str]) -> None:
    for raw in (b'{"external_id": ', b"", b"\xff\xfe", b"[1, 2"):
        response = client.post(
            "/api/v1/warnings", data=raw, headers={**auth, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, raw
        assert response.get_json()["error"]["field"] == "body"


def test_non_json_is_415(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/warnings",
        data="phone=1",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.get_json()["error"]["field"] == "Content-Type"


def test_too_large_is_413(client: FlaskClient, auth: dict[str, str], settings: Any) -> None:
    big = {"warnings": [warning(external_id=str(i)) for i in range(settings.intake.max_batch + 1)]}
    response = post(client, auth, big)
    assert response.status_code == 413
    assert response.get_json()["error"]["field"] == "warnings"
    huge = json.dumps(warning(note="x" * (settings.server.max_body_bytes + 10)))
    response = client.post(
        "/api/v1/warnings", data=huge, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["field"] == "body"


def test_other_json_shapes_are_422(client: FlaskClient, auth: dict[str, str]) -> None:
    for body, field in (
        ([warning()], "body"),
        ({"warnings": []}, "warnings"),
        ({"warnings": [], "x": 1}, "x"),
        (42, "body"),
    ):
        response = post(client, auth, body)
        assert response.status_code == 422, body
        assert response.get_json()["error"]["field"] == field


def _signed(source: NewSource, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    assert source.signing_secret
    return {
        "Authorization": f"Bearer {source.api_key}",
        "Content-Type": "application/json",
        "X-Robot-Timestamp": ts,
        "X-Robot-Signature": body_signature(source.signing_secret, ts, body),
    }


def test_signed_sources_must_sign(client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        strict = add_source(session, "strict", require_signature=True)
    body = json.dumps(warning()).encode()
    unsigned = client.post(
        "/api/v1/warnings",
        data=body,
        headers={"Authorization": f"Bearer {strict.api_key}", "Content-Type": "application/json"},
    )
    assert unsigned.status_code == 401
    assert unsigned.get_json()["error"]["field"] == "X-Robot-Timestamp"
    tampered = client.post(
        "/api/v1/warnings", data=body.replace(b"high", b"low "), headers=_signed(strict, body)
    )
    assert tampered.status_code == 401
    assert tampered.get_json()["error"]["field"] == "X-Robot-Signature"
    replayed = client.post(
        "/api/v1/warnings", data=body, headers=_signed(strict, body, int(time.time()) - 301)
    )
    assert replayed.status_code == 401
    assert replayed.get_json()["error"]["field"] == "X-Robot-Timestamp"
    good = client.post("/api/v1/warnings", data=body, headers=_signed(strict, body))
    assert good.status_code == 202


def test_get_case_shows_state_attempts_and_timeline_only_to_its_source(
    client: FlaskClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    case_id = post(client, auth, warning()).get_json()["case_id"]
    response = client.get(f"/api/v1/cases/{case_id}", headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == case_id
    assert body["phone"] == "+86138****8000"
    assert body["state"] == "open"
    assert [e["kind"] for e in body["timeline"]] == ["case.opened", "warning.received"]
    assert PHONE not in json.dumps(body)
    with sessions.begin() as session:
        other = add_source(session, "other")
    foreign = client.get(
        f"/api/v1/cases/{case_id}", headers={"Authorization": f"Bearer {other.api_key}"}
    )
    assert foreign.status_code == 404
    assert client.get("/api/v1/cases/999999", headers=auth).status_code == 404
    assert client.get(f"/api/v1/cases/{case_id}").status_code == 401


def test_the_longest_language_accepted_fits_the_cases_column() -> None:
    assert LANGUAGE_MAX == Case.__table__.c.language.type.length
