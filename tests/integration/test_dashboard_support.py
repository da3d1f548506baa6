"""Helpers shared by the dashboard tests: staff, escalated cases, signing in, CSRF-aware posts.

(Named test_dashboard_* so it sits with the dashboard tests; it holds no tests itself.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from robot import casework
from robot.config import Settings
from robot.dashboard import accounts
from robot.dashboard.accounts import add_staff
from robot.intake.service import accept_warning
from robot.intake.validation import validate_warning
from robot.models import Case, utcnow
from robot.sources import Caller, NewSource

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"|name="csrf_token" value="([^"]+)"')
FETCH = {"X-Requested-With": "fetch", "Accept": "application/json"}


def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still scrypt, at a cost that keeps the suite quick (production uses werkzeug's default)."""
    monkeypatch.setattr(accounts, "HASH_METHOD", "scrypt:2048:8:1")


def local_input(when: datetime) -> str:
    """A datetime-local form value in the dashboard's zone (Asia/Shanghai by default)."""
    return when.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%dT%H:%M")


def fast(settings: Settings) -> Settings:
    """No slow-down on failed sign-ins (the tests fail many on purpose)."""
    return replace(settings, dashboard=replace(settings.dashboard, failed_login_delay_seconds=0.0))


def make_staff(
    sessions: sessionmaker[Session],
    username: str,
    *,
    role: str = "operator",
    area: str | None = None,
    language: str = "en-US",
    phone: str | None = None,
    password: str = PASSWORD,
) -> int:
    with sessions.begin() as session:
        staff = add_staff(
            session, username, password, role=role, area=area, language=language, phone=phone
        )
        return staff.id


def make_case(
    sessions: sessionmaker[Session],
    source: NewSource,
    phone: str,
    *,
    risk: str = "high",
    fraud_type: str = "fake_police",
    area: str | None = None,
    escalated_ago: timedelta | None = timedelta(0),
    critical: bool = False,
    contacts: Sequence[str] = (),
    drill: bool = False,
    now: datetime | None = None,
    external_id: str | None = None,
) -> int:
    """A case as the intake makes it, escalated ``escalated_ago`` (None: not escalated)."""
    now = now or utcnow()
    item: dict[str, Any] = {
        "external_id": external_id or f"t-{phone}-{now.timestamp()}",
        "phone": phone,
        "risk": risk,
        "fraud_type": fraud_type,
        "trigger": "fraud_call",
    }
    if area:
        item["area"] = area
    if contacts:
        item["contacts"] = [{"phone": c, "relation": "parent"} for c in contacts]
    checked = validate_warning(item, "CN", now)
    assert not isinstance(checked, list), checked
    caller = Caller(source.source.id, source.source.name, False, None)
    with sessions.begin() as session:
        case_id = accept_warning(session, caller, checked, now).case_id
        case = session.get(Case, case_id)
        assert case is not None
        case.drill = drill
        case.next_review_at = None  # no worker runs here
        if escalated_ago is not None:
            at = now - escalated_ago
            casework.escalate(session, case, "test", "robot", at, critical=critical)
            case.next_review_at = None
    return case_id


def csrf_of(response: TestResponse) -> str:
    match = _CSRF.search(response.get_data(as_text=True))
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    """Sign in through the form (the sign-in page itself answers in English)."""
    english = {"Accept-Language": "en-US"}
    token = csrf_of(client.get("/dashboard/login", headers=english))
    return client.post(
        "/dashboard/login",
        data={"username": username, "password": password, "csrf_token": token},
        headers=english,
    )


def token(client: FlaskClient) -> str:
    return csrf_of(client.get("/dashboard/"))


def post(client: FlaskClient, url: str, *, json: bool = True, **form: str) -> TestResponse:
    """POST a dashboard form with this session's CSRF token (as a script unless json=False)."""
    data = {"csrf_token": token(client), **form}
    return client.post(url, data=data, headers=FETCH if json else {})
