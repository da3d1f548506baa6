"""Supervision figures (drills left out), drills, roles, and the ``robot staff`` commands."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from robot.cli import main
from robot.config import Settings
from robot.dashboard.drill import DrillRefused, post_drill
from robot.dashboard.supervision import build_report
from robot.models import Attempt, Case, Event, Source, Staff, utcnow
from robot.sources import NewSource
from tests.integration.test_dashboard_support import (
    PASSWORD,
    cheap_hashes,
    fast,
    login,
    make_case,
    make_staff,
    post,
)

EMULATOR = "http://127.0.0.1:8010"


@pytest.fixture
def settings(settings: Settings, database_url: str) -> Settings:
    fast_settings = fast(settings)
    return replace(fast_settings, twilio=replace(fast_settings.twilio, api_base_url=EMULATOR))


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_hashes(monkeypatch)


def finish(
    sessions: sessionmaker[Session], case_id: int, channel: str, outcome: str, after: timedelta
) -> None:
    """A robot attempt to the person that ended ``after`` the case opened."""
    with sessions.begin() as session:
        case = session.get(Case, case_id)
        assert case is not None
        at = case.opened_at + after
        session.add(
            Attempt(
                case_id=case_id,
                channel=channel,
                purpose="warning",
                to_phone=case.phone,
                template="warning_call",
                due_at=case.opened_at,
                state="finished",
                outcome=outcome,
                answered_by="human" if channel == "call" else None,
                answered_at=at if channel == "call" else None,
                finished_at=at,
            )
        )


def test_operators_cannot_open_supervision(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    make_staff(sessions, "ana")
    login(client, "ana")
    assert client.get("/dashboard/supervision").status_code == 403
    assert post(client, "/dashboard/supervision/drill", count="1").status_code == 403


def test_report_counts_today_without_drills(
    sessions: sessionmaker[Session], source: NewSource, settings: Settings
) -> None:
    zone = ZoneInfo(settings.dashboard.timezone)
    reached = make_case(sessions, source, "+8613900000001")
    dissuaded = make_case(sessions, source, "+8613900000002")
    believes = make_case(sessions, source, "+8613900000003")
    make_case(sessions, source, "+8613900000004", escalated_ago=None)
    drill = make_case(sessions, source, "+8613800138002", drill=True)
    with sessions.begin() as session:
        session.execute(update(Case).where(Case.id == reached).values(confirmed_at=utcnow()))
        session.execute(update(Case).where(Case.id == dissuaded).values(disposition="dissuaded"))
        session.execute(
            update(Case)
            .where(Case.id == believes)
            .values(disposition="still_believes", confirmed_at=utcnow())
        )
        session.execute(update(Case).where(Case.id == drill).values(disposition="dissuaded"))
    finish(sessions, reached, "call", "confirmed", timedelta(seconds=40))
    finish(sessions, reached, "sms", "delivered", timedelta(seconds=10))
    finish(sessions, dissuaded, "call", "no_answer", timedelta(seconds=30))
    finish(sessions, believes, "call", "answered", timedelta(seconds=90))
    finish(sessions, drill, "sms", "delivered", timedelta(seconds=1))
    with sessions() as session:
        report = build_report(session, utcnow(), zone)
    assert report.cases_today == 4 and report.warnings_today == 4
    assert report.reached_today == 2  # confirmed + dissuaded; still-believes is not reached
    assert report.reach_rate == 0.5
    assert report.first_contact_seconds == pytest.approx([10.0, 90.0], abs=1)
    assert report.open_by_age["escalated"]["age.lt5"] == 3
    assert report.open_by_age["open"]["age.lt5"] == 1


def test_workload_per_operator(
    app: Flask, sessions: sessionmaker[Session], source: NewSource
) -> None:
    make_staff(sessions, "ana")
    make_staff(sessions, "boss", role="supervisor")
    case_id = make_case(sessions, source, "+8613900000011")
    drill_id = make_case(sessions, source, "+8613800138005", drill=True)
    ana, boss = app.test_client(), app.test_client()
    login(ana, "ana")
    login(boss, "boss")
    post(ana, f"/dashboard/cases/{case_id}/claim")
    post(ana, f"/dashboard/cases/{case_id}/sms", template="warning_sms")
    post(ana, f"/dashboard/cases/{drill_id}/claim")
    page = boss.get("/dashboard/supervision")
    assert page.status_code == 200
    with sessions() as session:
        report = build_report(session, utcnow(), ZoneInfo("UTC"))
    mine = next(w for w in report.workload if w.username == "ana")
    assert mine.claimed == 1  # the drill case is not counted
    assert mine.actions_today == 2  # claimed + attempt.scheduled on the real case
    assert 'data-username="ana"' in page.get_data(as_text=True)


def test_drill_posts_marked_cases_through_the_intake(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    posted = post_drill(sessions, settings, "staff:boss", count=3, area="east")
    assert [p.phone for p in posted] == ["+8613800138002", "+8613800138003", "+8613800138005"]
    with sessions() as session:
        cases = session.scalars(select(Case).order_by(Case.id)).all()
        source = session.scalars(select(Source).where(Source.name == "drill")).one()
        kinds = session.scalars(select(Event.kind).where(Event.case_id == cases[0].id)).all()
    assert all(c.drill and c.area == "east" and c.next_review_at is not None for c in cases)
    assert source.revoked_at is not None and source.callback_url is None
    assert {"case.opened", "warning.received", "drill.posted"} <= set(kinds)


def test_drill_never_touches_a_real_case(
    sessions: sessionmaker[Session], settings: Settings, source: NewSource
) -> None:
    real = make_case(sessions, source, "+8613800138002")
    posted = post_drill(sessions, settings, "system", count=1, digits=["2", "5"])
    assert [p.phone for p in posted] == ["+8613800138005"]
    with pytest.raises(DrillRefused):
        post_drill(sessions, settings, "system", count=1, digits=["2"])
    with sessions() as session:
        case = session.get(Case, real)
        assert case is not None and case.drill is False


def test_drill_refused_against_the_real_provider(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    real = replace(settings, twilio=replace(settings.twilio, api_base_url="https://api.twilio.com"))
    with pytest.raises(DrillRefused):
        post_drill(sessions, real, "system", count=1)


def test_drill_button_on_the_supervision_page(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    make_staff(sessions, "boss", role="supervisor")
    login(client, "boss")
    response = post(client, "/dashboard/supervision/drill", json=False, count="2")
    assert response.status_code == 303
    assert "2 drill cases posted" in client.get("/dashboard/supervision").get_data(as_text=True)
    rows = client.get("/dashboard/queue.json?state=open").get_json()["rows"]
    assert len(rows) == 2 and all(r["drill"] for r in rows)


def test_supervisor_unlocks_an_account(app: Flask, sessions: sessionmaker[Session]) -> None:
    ana_id = make_staff(sessions, "ana")
    make_staff(sessions, "boss", role="supervisor")
    with sessions.begin() as session:
        session.execute(
            update(Staff)
            .where(Staff.id == ana_id)
            .values(locked_until=utcnow() + timedelta(hours=1))
        )
    boss = app.test_client()
    login(boss, "boss")
    assert "Unlock" in boss.get("/dashboard/supervision").get_data(as_text=True)
    post(boss, f"/dashboard/staff/{ana_id}/unlock")
    assert login(app.test_client(), "ana").status_code == 303


# --- robot staff ... ----------------------------------------------------------------------------


def test_staff_add_with_password_file(
    tmp_path: Path,
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROBOT_DATABASE_URL", settings.database.url)
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "staff",
            "add",
            "li",
            "--role",
            "operator",
            "--password-file",
            str(secret),
            "--area",
            "east",
            "--language",
            "zh-CN",
            "--phone",
            "13800138003",
        ],
    )
    assert result.exit_code == 0, result.output
    with sessions() as session:
        staff = session.scalars(select(Staff).where(Staff.username == "li")).one()
    assert (staff.role, staff.area, staff.language, staff.phone) == (
        "operator",
        "east",
        "zh-CN",
        "+8613800138003",
    )
    assert staff.password_hash.startswith("scrypt:")
    duplicate = runner.invoke(main, ["staff", "add", "li", "--password-file", str(secret)])
    assert duplicate.exit_code != 0 and "already exists" in duplicate.output
    short = tmp_path / "short"
    short.write_text("tiny")
    weak = runner.invoke(main, ["staff", "add", "bo", "--password-file", str(short)])
    assert weak.exit_code != 0 and "at least" in weak.output
    listed = runner.invoke(main, ["staff", "list"])
    assert "li\toperator\teast" in listed.output and PASSWORD not in listed.output


def test_staff_add_prompts_for_the_password(
    settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBOT_DATABASE_URL", settings.database.url)
    result = CliRunner().invoke(
        main, ["staff", "add", "boss", "--role", "supervisor"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    with sessions() as session:
        assert session.scalar(select(Staff.role).where(Staff.username == "boss")) == "supervisor"


def test_staff_drill_and_unlock_commands(
    settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBOT_DATABASE_URL", settings.database.url)
    runner = CliRunner()
    refused = runner.invoke(main, ["staff", "drill", "--count", "1"])
    assert refused.exit_code != 0 and "emulator" in refused.output
    monkeypatch.setenv("ROBOT_TWILIO_API_BASE_URL", EMULATOR)
    result = runner.invoke(main, ["staff", "drill", "--count", "2", "--digit", "7"])
    assert result.exit_code == 0, result.output
    assert "+86138****8007" in result.output
    with sessions() as session:
        drills = session.scalars(select(Case).where(Case.drill.is_(True))).all()
    assert len(drills) == 1  # the second warning joined the open drill case for the same number
    make_staff(sessions, "ana")
    with sessions.begin() as session:
        session.execute(
            update(Staff).values(locked_until=utcnow() + timedelta(hours=1), failed_logins=3)
        )
    assert runner.invoke(main, ["staff", "unlock", "ana"]).exit_code == 0
    with sessions() as session:
        assert session.scalar(select(Staff.locked_until)) is None
