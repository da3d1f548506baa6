"""Dashboard sign-in: hashing, sessions, lockout, CSRF and login events."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from robot.config import Settings
from robot.models import Event, Staff, utcnow
from tests.integration.test_dashboard_support import (
    FETCH,
    PASSWORD,
    cheap_hashes,
    csrf_of,
    fast,
    login,
    make_staff,
)


@pytest.fixture
def settings(settings: Settings, database_url: str) -> Settings:
    return fast(settings)


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_hashes(monkeypatch)


def events(sessions: sessionmaker[Session], kind_prefix: str = "staff.") -> list[Event]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Event).where(Event.kind.startswith(kind_prefix)).order_by(Event.id)
            )
        )


def test_password_is_hashed_with_scrypt(sessions: sessionmaker[Session]) -> None:
    make_staff(sessions, "ana")
    with sessions() as session:
        stored = session.scalar(select(Staff.password_hash).where(Staff.username == "ana"))
    assert stored is not None and stored.startswith("scrypt:")
    assert PASSWORD not in stored


def test_sign_in_opens_a_session_and_records_an_event(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    make_staff(sessions, "ana")
    assert client.get("/dashboard/").status_code == 302  # not signed in yet
    response = login(client, "ana")
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/dashboard/").status_code == 200
    login_events = [e for e in events(sessions) if e.kind == "staff.login"]
    assert [(e.case_id, e.actor) for e in login_events] == [(None, "staff:ana")]


def test_unsigned_script_gets_401_json(client: FlaskClient) -> None:
    response = client.get("/dashboard/queue.json")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "signed_out"


def test_wrong_passwords_lock_the_account(
    client: FlaskClient, sessions: sessionmaker[Session], settings: Settings
) -> None:
    make_staff(sessions, "ana")
    limit = settings.dashboard.max_failed_logins
    for _ in range(limit - 1):
        assert login(client, "ana", "wrong password!").status_code == 401
    with sessions() as session:
        assert session.scalar(select(Staff.failed_logins)) == limit - 1
    locked = login(client, "ana", "wrong password!")
    assert locked.status_code == 401
    assert "locked" in locked.get_data(as_text=True)
    # Now even the right password is refused until the lock runs out.
    refused = login(client, "ana")
    assert refused.status_code == 401
    assert client.get("/dashboard/").status_code == 302
    failed = [e for e in events(sessions) if e.kind == "staff.login_failed"]
    assert len(failed) == limit + 1
    assert all(e.actor == "staff:ana" and e.case_id is None for e in failed)
    assert failed[-2].data["locked_until"]
    assert failed[-1].data["reason"] == "locked"
    with sessions() as session:
        until = session.scalar(select(Staff.locked_until))
    assert until is not None
    expected = utcnow() + timedelta(minutes=settings.dashboard.lockout_minutes)
    assert abs((until - expected).total_seconds()) < 60


def test_the_lock_runs_out(client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    make_staff(sessions, "ana")
    with sessions.begin() as session:
        session.execute(update(Staff).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert login(client, "ana").status_code == 303
    with sessions() as session:
        assert session.scalar(select(Staff.locked_until)) is None


def test_unknown_and_disabled_users_are_refused_alike(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    make_staff(sessions, "ana")
    with sessions.begin() as session:
        session.execute(update(Staff).values(active=False))
    unknown = login(client, "nobody")
    disabled = login(client, "ana")
    assert unknown.status_code == disabled.status_code == 401
    assert "Wrong username or password" in unknown.get_data(as_text=True)
    assert "Wrong username or password" in disabled.get_data(as_text=True)
    reasons = [e.data["reason"] for e in events(sessions) if e.kind == "staff.login_failed"]
    assert reasons == ["unknown_user", "inactive"]


def test_sign_in_without_csrf_token_is_refused(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    make_staff(sessions, "ana")
    client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"username": "ana", "password": PASSWORD})
    assert response.status_code == 403
    assert not [e for e in events(sessions) if e.kind == "staff.login"]


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_every_post_needs_the_session_csrf_token(
    client: FlaskClient, sessions: sessionmaker[Session], token: str | None
) -> None:
    make_staff(sessions, "ana")
    login(client, "ana")
    data = {} if token is None else {"csrf_token": token}
    as_page = client.post("/dashboard/cases/1/reveal", data=data)
    assert as_page.status_code == 403
    assert "expired" in as_page.get_data(as_text=True)
    as_script = client.post("/dashboard/cases/1/reveal", data=data, headers=FETCH)
    assert as_script.status_code == 403
    assert as_script.get_json()["error"]["code"] == "csrf"


def test_another_sessions_token_does_not_work(app: Flask, sessions: sessionmaker[Session]) -> None:
    make_staff(sessions, "ana")
    make_staff(sessions, "ben")
    first, second = app.test_client(), app.test_client()
    login(first, "ana")
    login(second, "ben")
    first_token = csrf_of(first.get("/dashboard/"))
    response = second.post("/dashboard/logout", data={"csrf_token": first_token})
    assert response.status_code == 403


def test_logout_ends_the_session(client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    make_staff(sessions, "ana")
    login(client, "ana")
    token = csrf_of(client.get("/dashboard/"))
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/dashboard/").status_code == 302
    assert [e.kind for e in events(sessions)][-1] == "staff.logout"


def test_changing_the_password_ends_open_sessions(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    from robot.dashboard.accounts import set_password

    make_staff(sessions, "ana")
    login(client, "ana")
    assert client.get("/dashboard/").status_code == 200
    with sessions.begin() as session:
        staff = session.scalars(select(Staff)).one()
        set_password(session, staff, "another long password")
    assert client.get("/dashboard/").status_code == 302


def test_next_only_leads_to_dashboard_pages(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    make_staff(sessions, "ana")
    token = csrf_of(client.get("/dashboard/login"))
    response = client.post(
        "/dashboard/login",
        data={
            "username": "ana",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/",
        },
    )
    assert response.headers["Location"] == "/dashboard/"


def test_the_interface_speaks_each_persons_language(
    app: Flask, sessions: sessionmaker[Session]
) -> None:
    make_staff(sessions, "li", language="zh-CN")
    make_staff(sessions, "ann", language="en-US")
    chinese, english = app.test_client(), app.test_client()
    login(chinese, "li")
    login(english, "ann")
    assert "已转人工案件" in chinese.get("/dashboard/").get_data(as_text=True)
    assert "Escalated cases" in english.get("/dashboard/").get_data(as_text=True)
    # Switching is a CSRF-protected POST and sticks to the account.
    token = csrf_of(english.get("/dashboard/"))
    english.post("/dashboard/me/language", data={"language": "zh-CN", "csrf_token": token})
    assert "已转人工案件" in english.get("/dashboard/").get_data(as_text=True)
    with sessions() as session:
        assert session.scalar(select(Staff.language).where(Staff.username == "ann")) == "zh-CN"


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/dashboard/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


def test_both_languages_have_every_message() -> None:
    from robot.dashboard.i18n import EN, ZH

    assert set(EN) == set(ZH)
    for key, text in EN.items():
        # The same {placeholders} in both, or formatting would fail in one language only.
        assert sorted(re.findall(r"{(\w+)}", text)) == sorted(re.findall(r"{(\w+)}", ZH[key])), key
