"""Twilio-facing endpoints: signatures (incl. rotation and proxies), idempotency, ordering."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

import robot.webhooks.messages as messages_module
from robot.app import create_app
from robot.config import Settings
from robot.db import is_postgres, read_session
from robot.models import Attempt, AttemptState, Case, Event, utcnow
from robot.webhooks.status import status_group

PUBLIC = "https://robot.example.org"
TOKEN = "current-token"
OLD_TOKEN = "previous-token"


@pytest.fixture
def app(settings: Settings, engine: Any) -> Flask:
    # Behind a TLS-terminating proxy: Twilio signs the public https URL, we see plain http.
    settings = replace(
        settings,
        server=replace(settings.server, public_base_url=PUBLIC),
        twilio=replace(settings.twilio, auth_token=TOKEN, previous_auth_tokens=(OLD_TOKEN,)),
    )
    return create_app(settings, engine=engine)


@pytest.fixture
def attempt(sessions: sessionmaker[Session]) -> Attempt:
    now = utcnow()
    with sessions.begin() as session:
        from robot.sources import add_source

        source = add_source(session, "feed").source
        case = Case(
            source_id=source.id,
            phone="+8613800138000",
            open_key="+8613800138000",
            risk="high",
            fraud_type="fake_police",
            opened_at=now,
            updated_at=now,
        )
        session.add(case)
        session.flush()
        attempt = Attempt(
            case_id=case.id,
            channel="call",
            purpose="warning",
            to_phone=case.phone,
            template="warning_call",
            due_at=now,
            state=AttemptState.PLACED.value,
            provider_sid="CA" + "1" * 32,
            placed_at=now,
        )
        session.add(attempt)
        session.flush()
        session.expunge_all()
    return attempt


def signed_post(
    client: FlaskClient,
    path: str,
    params: dict[str, str],
    token: str = TOKEN,
    signature: str | None = None,
) -> Any:
    headers = {
        "X-Twilio-Signature": signature
        if signature is not None
        else RequestValidator(token).compute_signature(PUBLIC + path, params)
    }
    return client.post(path, data=params, headers=headers, base_url="http://10.0.0.5:8000")


def status_params(status: str, seq: int, **extra: str) -> dict[str, str]:
    return {
        "CallSid": "CA" + "1" * 32,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550006",
        "To": "+8613800138000",
        "CallStatus": status,
        "SequenceNumber": str(seq),
        "CallbackSource": "call-progress-events",
        **extra,
    }


def load(sessions: sessionmaker[Session], attempt_id: int) -> Attempt:
    with sessions() as session:
        found = session.get(Attempt, attempt_id)
        assert found is not None
        return found


def events(sessions: sessionmaker[Session], kind: str) -> list[Event]:
    with sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def test_a_forged_or_missing_signature_is_refused_and_changes_nothing(
    client: FlaskClient,
    attempt: Attempt,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = f"/twilio/call/{attempt.code}/status"
    params = status_params("completed", 5, CallDuration="30")
    assert signed_post(client, path, params, signature="").status_code == 403
    forged = signed_post(client, path, params, token="attacker-token")
    assert forged.status_code == 403
    assert forged.get_json()["error"]["field"] == "X-Twilio-Signature"
    tampered_signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)
    tampered = client.post(
        path,
        data={**params, "CallStatus": "busy"},
        headers={"X-Twilio-Signature": tampered_signature},
    )
    assert tampered.status_code == 403
    assert load(sessions, attempt.id).state == AttemptState.PLACED.value
    assert "+8613800138000" not in caplog.text


def test_the_previous_auth_token_is_still_accepted_during_rotation(
    client: FlaskClient, attempt: Attempt
) -> None:
    path = f"/twilio/call/{attempt.code}/status"
    assert (
        signed_post(client, path, status_params("ringing", 1), token=OLD_TOKEN).status_code == 200
    )
    assert (
        signed_post(client, path, status_params("in-progress", 2), token=TOKEN).status_code == 200
    )


def test_duplicates_and_late_callbacks_change_nothing(
    client: FlaskClient, attempt: Attempt, sessions: sessionmaker[Session]
) -> None:
    path = f"/twilio/call/{attempt.code}/status"
    for params in (
        status_params("initiated", 0),
        status_params("in-progress", 2),
        status_params("completed", 3, CallDuration="42"),
    ):
        assert signed_post(client, path, params).status_code == 200
    done = load(sessions, attempt.id)
    assert (done.state, done.outcome, done.provider_status, done.duration_seconds) == (
        "finished",
        "answered",
        "completed",
        42,
    )
    raw_events = len(events(sessions, "call.status"))
    # A late "ringing" (seq 1) and a repeated "completed" arrive afterwards.
    assert signed_post(client, path, status_params("ringing", 1)).status_code == 200
    assert (
        signed_post(client, path, status_params("completed", 3, CallDuration="42")).status_code
        == 200
    )
    after = load(sessions, attempt.id)
    assert (after.state, after.outcome, after.provider_status, after.last_sequence) == (
        "finished",
        "answered",
        "completed",
        3,
    )
    assert len(events(sessions, "call.status")) == raw_events
    stored = events(sessions, "call.status")[-1]
    assert stored.data["CallStatus"] == "completed"  # the raw event is on the timeline


def test_out_of_order_answered_after_completed_is_ignored(
    client: FlaskClient, attempt: Attempt, sessions: sessionmaker[Session]
) -> None:
    path = f"/twilio/call/{attempt.code}/status"
    signed_post(client, path, status_params("no-answer", 3))
    signed_post(client, path, status_params("ringing", 1))
    signed_post(client, path, status_params("in-progress", 2))
    final = load(sessions, attempt.id)
    assert (final.outcome, final.answered_at) == ("no_answer", None)


def test_key_1_confirms_and_cancels_pending_robot_attempts(
    client: FlaskClient, attempt: Attempt, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        retry = Attempt(
            case_id=attempt.case_id,
            channel="call",
            purpose="retry",
            to_phone=attempt.to_phone,
            template="warning_call",
            due_at=utcnow() + timedelta(minutes=5),
        )
        sms = Attempt(
            case_id=attempt.case_id,
            channel="sms",
            purpose="warning",
            to_phone=attempt.to_phone,
            template="warning_sms",
            due_at=utcnow() + timedelta(minutes=1),
        )
        session.add_all([retry, sms])
    path = f"/twilio/call/{attempt.code}/gather?round=1"
    response = signed_post(client, path, {"CallSid": "CA" + "1" * 32, "Digits": "1"})
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert "<Hangup" in response.get_data(as_text=True)
    with sessions() as session:
        case = session.get(Case, attempt.case_id)
        assert case is not None and case.confirmed_at is not None
        states = set(session.scalars(select(Attempt.state).where(Attempt.id != attempt.id)))
        assert states == {"canceled"}


def test_twiml_plays_the_script_then_the_menu(client: FlaskClient, attempt: Attempt) -> None:
    response = signed_post(
        client, f"/twilio/call/{attempt.code}/twiml?round=1", {"CallSid": "CA" + "1" * 32}
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert (
        body.index("<Gather")
        < body.index("<Say")
        < body.index("</Gather>")
        < body.index("<Redirect")
    )
    assert f"{PUBLIC}/twilio/call/{attempt.code}/gather?round=1" in body
    second = signed_post(
        client, f"/twilio/call/{attempt.code}/twiml?round=2", {"CallSid": "CA" + "1" * 32}
    ).get_data(as_text=True)
    assert "<Redirect" not in second and "<Hangup" in second  # no key twice: goodbye


def test_unknown_codes_get_an_empty_answer(client: FlaskClient) -> None:
    response = signed_post(client, "/twilio/call/nope/status", status_params("completed", 1))
    assert response.status_code == 200
    assert "<Response" in response.get_data(as_text=True)


def test_a_finishing_callback_marks_the_case_for_review_and_a_progress_one_does_not(
    client: FlaskClient, attempt: Attempt, sessions: sessionmaker[Session]
) -> None:
    def case_now() -> Case:
        with sessions() as session:
            found = session.get(Case, attempt.case_id)
            assert found is not None
            return found

    before = case_now()
    path = f"/twilio/call/{attempt.code}/status"
    signed_post(client, path, status_params("ringing", 1))
    assert case_now().version == before.version  # progress: the case is not touched
    signed_post(client, path, status_params("busy", 2, SipResponseCode="486"))
    after = case_now()
    assert after.version == before.version + 1
    assert after.next_review_at is not None and after.next_review_at >= after.updated_at
    done = load(sessions, attempt.id)
    assert (done.state, done.outcome, done.error_code, done.lease_until) == (
        "finished",
        "busy",
        "486",
        None,
    )
    kinds = [e.kind for e in events(sessions, "call.status") + events(sessions, "attempt.finished")]
    assert kinds == ["call.status", "call.status", "attempt.finished"]
    with sessions() as session:  # written at the same moment: the timeline goes by id
        by_id = session.scalars(
            select(Event.kind).where(Event.attempt_id == attempt.id).order_by(Event.id)
        ).all()
    assert list(by_id[-2:]) == ["call.status", "attempt.finished"]
    finished = events(sessions, "attempt.finished")[0]
    assert (finished.attempt_id, finished.data) == (
        attempt.id,
        {"channel": "call", "outcome": "busy"},
    )


def _sms_attempt(sessions: sessionmaker[Session], case_id: int, to: str) -> Attempt:
    with sessions.begin() as session:
        sms = Attempt(
            case_id=case_id,
            channel="sms",
            purpose="warning",
            to_phone=to,
            template="warning_sms",
            due_at=utcnow(),
            state=AttemptState.PLACED.value,
            provider_sid="SM" + to[-4:] * 8,
        )
        session.add(sms)
        session.flush()
        session.expunge(sms)
    return sms


@pytest.mark.parametrize(
    ("to", "error", "blocked"),
    [
        ("+8613800138000", "30006", ["sms"]),  # a landline: no texts, calls still go
        ("+8613800138000", "30005", ["sms", "call"]),  # no such number: nothing can reach it
        ("+8613800138000", "30003", []),  # unreachable for now: texts may still arrive
        ("+8613900139000", "30006", []),  # a relative's number: the person's own is fine
    ],
)
def test_an_undeliverable_text_blocks_sms_only_when_it_is_permanent_and_the_persons(
    client: FlaskClient,
    attempt: Attempt,
    sessions: sessionmaker[Session],
    to: str,
    error: str,
    blocked: list[str],
) -> None:
    sms = _sms_attempt(sessions, attempt.case_id, to)
    path = f"/twilio/sms/{sms.code}/status"
    params = {"MessageSid": sms.provider_sid or "", "MessageStatus": "undelivered"}
    assert signed_post(client, path, {**params, "ErrorCode": error}).status_code == 200
    done = load(sessions, sms.id)
    assert (done.outcome, done.error_code) == ("undelivered", error)
    with sessions() as session:
        case = session.get(Case, attempt.case_id)
        assert case is not None
        assert (case.sms_blocked, case.calls_blocked) == ("sms" in blocked, "call" in blocked)
    stops = events(sessions, "channel.blocked")
    assert [e.data for e in stops] == ([{"channels": blocked, "code": error}] if blocked else [])


#: The database_url fixture's PostgreSQL case only.
POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@POSTGRES_ONLY
def test_a_callback_that_raced_another_write_is_applied_again_to_the_new_row(
    client: FlaskClient,
    attempt: Attempt,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL reads the attempt without a lock and writes only if the row is unchanged:
    a callback that lost a race is applied again, under the lock, to what the winner left.
    (SQLite reads and writes under its one write lock: there is no such race.)"""
    from robot.webhooks import calls, status

    raced: list[bool] = []
    rule = calls.apply_call_status

    def racing_rule(row: Any, params: Any, now: Any) -> bool:
        if not raced:  # between this callback's read and its write, "in-progress" commits
            raced.append(True)
            with sessions.begin() as session:
                other = session.get(Attempt, attempt.id)
                assert other is not None
                other.provider_status, other.last_sequence = "in-progress", 2
        return rule(row, params, now)

    monkeypatch.setattr(calls, "apply_call_status", racing_rule)
    path = f"/twilio/call/{attempt.code}/status"
    assert signed_post(client, path, status_params("ringing", 1)).status_code == 200
    after = load(sessions, attempt.id)
    # Seen against the winner's row, "ringing" (seq 1) is older and changes nothing.
    assert (after.provider_status, after.last_sequence) == ("in-progress", 2)
    assert events(sessions, "call.status") == []
    # Then a newer callback applies normally, whichever path it takes.
    assert (
        signed_post(client, path, status_params("completed", 3, CallDuration="20")).status_code
        == 200
    )
    done = load(sessions, attempt.id)
    assert (done.state, done.outcome, done.last_sequence) == ("finished", "answered", 3)
    assert [e.data["CallStatus"] for e in events(sessions, "call.status")] == ["completed"]
    assert status.PROVIDER == events(sessions, "attempt.finished")[0].actor


@POSTGRES_ONLY
def test_a_finishing_callback_wakes_the_worker_once_it_is_committed(
    client: FlaskClient, attempt: Attempt, engine: Any
) -> None:
    """LISTEN/NOTIFY (the SQLite wake-up is a datagram, tested with the worker)."""
    from robot.wakeup import WakeListener

    listener = WakeListener(engine)
    try:
        path = f"/twilio/call/{attempt.code}/status"
        signed_post(client, path, status_params("ringing", 1))
        assert not listener.wait(0.2)  # progress: the case is not due, nobody is woken
        signed_post(client, path, status_params("completed", 2, CallDuration="20"))
        assert listener.wait(2.0)
    finally:
        listener.close()


@POSTGRES_ONLY
@pytest.mark.parametrize(
    ("status", "error", "statements", "locked"),
    [
        ("delivered", "", 2, False),  # one read, one write: no follow-up is wanted
        ("undelivered", "30003", 2, False),  # not permanent: nothing to block
        ("undelivered", "30006", 6, True),  # blocks SMS: the locked transaction, then the ORM
    ],
)
def test_only_a_finishing_text_that_blocks_sms_takes_the_locked_path(
    client: FlaskClient,
    attempt: Attempt,
    sessions: sessionmaker[Session],
    engine: Any,
    status: str,
    error: str,
    statements: int,
    locked: bool,
) -> None:
    sms = _sms_attempt(sessions, attempt.case_id, "+8613800138000")
    seen: list[str] = []
    record_statement = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", record_statement)
    try:
        params = {"MessageSid": sms.provider_sid or "", "MessageStatus": status}
        if error:
            params["ErrorCode"] = error
        assert signed_post(client, f"/twilio/sms/{sms.code}/status", params).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record_statement)
    assert load(sessions, sms.id).outcome == status
    assert len(seen) == statements, seen
    assert any("FOR UPDATE" in statement for statement in seen) == locked


def test_on_sqlite_callbacks_that_arrive_during_a_write_share_the_next_transaction(
    app: Flask,
    engine: Any,
    attempt: Attempt,
    sessions: sessionmaker[Session],
) -> None:
    # SQLite has one writer: a callback that arrives while another is being written queues,
    # is answered only after its own commit, and shares the next transaction with the others
    # queued beside it. PostgreSQL takes concurrent writers: its callbacks never queue.
    postgres = is_postgres(engine)
    sms = _sms_attempt(sessions, attempt.case_id, "+8613800138000")
    posts = [
        (f"/twilio/call/{attempt.code}/status", status_params("completed", 1, CallDuration="5")),
        (
            f"/twilio/sms/{sms.code}/status",
            {"MessageSid": sms.provider_sid or "", "MessageStatus": "delivered"},
        ),
    ]

    def while_the_write_is_under_way(answers: dict[int, int]) -> None:
        if postgres:
            assert answers == {0: 200, 1: 200}  # answered without waiting
            return
        assert answers == {}  # nothing answered before its commit
        with read_session(sessions) as session:  # no write lock: the leader holds it
            placed = session.get(Attempt, attempt.id)
            assert placed is not None
            assert placed.state == AttemptState.PLACED.value

    answers, transactions = _sent_during_a_write(app, engine, posts, while_the_write_is_under_way)
    assert answers == {0: 200, 1: 200}
    assert load(sessions, attempt.id).state == AttemptState.FINISHED.value
    assert load(sessions, sms.id).outcome == "delivered"
    if not postgres:
        assert transactions == 1  # the two callbacks in one transaction


def _sent_during_a_write(
    app: Flask,
    engine: Any,
    posts: list[tuple[str, dict[str, str]]],
    while_under_way: Callable[[dict[int, int]], None] = lambda answers: None,
) -> tuple[dict[int, int], int]:
    """Send ``posts`` one by one while a status write is under way, each queued (SQLite) or
    answered (PostgreSQL) before the next is sent, so a group's order is known. Then
    ``while_under_way(answers so far)``, the write's end, and the answers and the transactions
    begun after the last post."""
    group = status_group(app.extensions["robot"])
    writing, release, counting = threading.Event(), threading.Event(), threading.Event()
    begins: list[object] = []

    def count_begin(conn: object) -> None:
        if counting.is_set():
            begins.append(conn)

    def slow_write(_conn: Any) -> bool:
        writing.set()
        assert release.wait(30)
        return False

    event.listen(engine, "begin", count_begin)
    leader = threading.Thread(target=group.apply, args=(slow_write,))
    leader.start()
    answers: dict[int, int] = {}
    threads: list[threading.Thread] = []
    try:
        assert writing.wait(10)
        for i, (path, params) in enumerate(posts):
            client = app.test_client()
            thread = threading.Thread(
                target=lambda i=i, client=client, path=path, params=params: answers.__setitem__(
                    i, signed_post(client, path, params).status_code
                )
            )
            queued_before = group.queued
            thread.start()
            threads.append(thread)
            deadline = time.monotonic() + 10
            while group.queued == queued_before and i not in answers:
                assert time.monotonic() < deadline, "the callback was neither queued nor answered"
                time.sleep(0.001)
        while_under_way(dict(answers))
        counting.set()
    finally:
        release.set()
        leader.join(30)
        for thread in threads:
            thread.join(30)
        event.remove(engine, "begin", count_begin)
    return answers, len(begins)


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_callbacks_of_one_attempt_in_one_group_apply_in_order_once(
    app: Flask, engine: Any, attempt: Attempt, sessions: sessionmaker[Session]
) -> None:
    path = f"/twilio/call/{attempt.code}/status"
    completed = status_params("completed", 2, CallDuration="5")
    posts = [(path, status_params("ringing", 1)), (path, completed), (path, completed)]
    answers, transactions = _sent_during_a_write(app, engine, posts)
    assert answers == {0: 200, 1: 200, 2: 200}
    assert transactions == 1
    # Each read the row as the one before left it: the repeat changed nothing.
    assert [e.data["CallStatus"] for e in events(sessions, "call.status")] == [
        "ringing",
        "completed",
    ]
    assert len(events(sessions, "attempt.finished")) == 1
    assert load(sessions, attempt.id).state == AttemptState.FINISHED.value


@SQLITE_ONLY
def test_a_text_that_blocks_sms_shares_a_group_with_a_call_of_its_case(
    app: Flask, engine: Any, attempt: Attempt, sessions: sessionmaker[Session]
) -> None:
    sms = _sms_attempt(sessions, attempt.case_id, "+8613800138000")
    undelivered = {
        "MessageSid": sms.provider_sid or "",
        "MessageStatus": "undelivered",
        "ErrorCode": "30006",
    }
    posts = [
        (f"/twilio/sms/{sms.code}/status", undelivered),
        (f"/twilio/call/{attempt.code}/status", status_params("completed", 1, CallDuration="5")),
    ]
    answers, transactions = _sent_during_a_write(app, engine, posts)
    assert answers == {0: 200, 1: 200}
    assert transactions == 1  # the follow-up's ORM session joined the group's transaction
    with sessions() as session:
        case = session.get(Case, attempt.case_id)
        assert case is not None and case.sms_blocked
    assert len(events(sessions, "channel.blocked")) == 1
    assert load(sessions, attempt.id).state == AttemptState.FINISHED.value


@SQLITE_ONLY
def test_a_callback_that_fails_in_a_group_fails_alone(
    app: Flask,
    engine: Any,
    attempt: Attempt,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(applied: Any) -> None:
        raise ValueError("a fault in the follow-up")

    monkeypatch.setattr(
        messages_module,
        "_BLOCK_IF_PERMANENT",
        replace(messages_module._BLOCK_IF_PERMANENT, run=broken),
    )
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answered as a server error, as in production
    sms = _sms_attempt(sessions, attempt.case_id, "+8613800138000")
    undelivered = {
        "MessageSid": sms.provider_sid or "",
        "MessageStatus": "undelivered",
        "ErrorCode": "30006",
    }
    call_path = f"/twilio/call/{attempt.code}/status"
    posts = [
        (call_path, status_params("ringing", 1)),
        (f"/twilio/sms/{sms.code}/status", undelivered),
        (call_path, status_params("completed", 2, CallDuration="5")),
    ]
    answers, transactions = _sent_during_a_write(app, engine, posts)
    assert answers[0] == 200 and answers[2] == 200
    assert answers[1] >= 500  # Twilio retries it later
    assert transactions == 1 + 3  # the failed group, then each on its own
    assert load(sessions, sms.id).outcome is None
    assert load(sessions, attempt.id).state == AttemptState.FINISHED.value
