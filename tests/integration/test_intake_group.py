"""Group commit of the intake, on SQLite and PostgreSQL: requests that queue while a write is
under way share the next transaction, and each still gets exactly what it would alone.

A group is formed deterministically by holding the writer's lock (as a write in progress does)
while the requests queue, then letting go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

import robot.api.intake as intake_view
import robot.intake.group as group_module
from robot.app import Services
from robot.db import is_postgres
from robot.intake.group import GROUP_MAX_WARNINGS, GroupWriter
from robot.models import Case, Event, IncomingWarning
from robot.sources import add_source

from .test_intake import warning


def _writer(app: Flask) -> GroupWriter:
    services: Services = app.extensions["robot"]
    return services.intake_writer


@contextmanager
def commits(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count the transactions committed meanwhile, a lone-warning statement as one (it is its
    own transaction in autocommit, which the engine's commit event does not see)."""
    seen = [0]

    def on_commit(conn: Connection) -> None:
        seen[0] += 1

    real_lone = group_module.store_lone

    def counted_lone(*args: Any) -> Any:
        result = real_lone(*args)
        if result is not None:
            seen[0] += 1
        return result

    monkeypatch.setattr(group_module, "store_lone", counted_lone)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)


class Queued:
    """Requests sent from threads while the writer is held, so that they form one group.

    On PostgreSQL a lone warning's one statement does not wait for the writer: such a request
    is answered at once, and only the others (merges, contacts, batches) join the group.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.writer = _writer(app)
        self.threads: list[threading.Thread] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []
        #: Whether each request was queued for the group (False: answered without waiting).
        self.queued: list[bool] = []

    def __enter__(self) -> Queued:
        self.writer.turn.acquire()
        return self

    def send(self, auth: dict[str, str], body: Any) -> None:
        """Send one request and wait until it is queued or answered, so the order is known."""
        slot = len(self.answers)
        self.answers.append((0, {}))
        client = self.app.test_client()
        answered = threading.Event()

        def run() -> None:
            response = client.post("/api/v1/warnings", json=body, headers=auth)
            self.answers[slot] = (response.status_code, response.get_json())
            answered.set()

        waiting = sum(self.queued)
        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)
        deadline = time.monotonic() + 10
        while self.writer.queued <= waiting and not answered.is_set():
            assert time.monotonic() < deadline, "the request was neither queued nor answered"
            time.sleep(0.001)
        self.queued.append(self.writer.queued > waiting)

    def __exit__(self, *exc: object) -> None:
        self.writer.turn.release()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive()


CONTACT = {"phone": "+8613900139001", "relation": "child"}


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_requests_queued_during_a_write_share_one_transaction(
    app: Flask,
    engine: Engine,
    auth: dict[str, str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    numbers = ["+8613800138001", "+8613800138002", "+8613800138003", "+8613800138004"]
    with commits(engine, monkeypatch) as committed, Queued(app) as queued:
        for i, number in enumerate(numbers):
            # With a contact: on PostgreSQL too the request takes the general path (a group).
            queued.send(auth, warning(external_id=f"w-{i}", phone=number, contacts=[CONTACT]))
    assert queued.queued == [True] * 4
    assert committed == [1]
    assert [code for code, _ in queued.answers] == [202] * 4
    assert [body["status"] for _, body in queued.answers] == ["created"] * 4
    with sessions() as session:
        phones = dict(session.execute(select(Case.id, Case.phone)).all())
        # Each request is answered with its own case.
        assert [phones[body["case_id"]] for _, body in queued.answers] == numbers
    assert count(sessions, IncomingWarning) == 4


def test_a_group_answers_each_request_as_if_it_came_alone(
    app: Flask, engine: Engine, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        bank = add_source(session, "bank")
    bank_auth = {"Authorization": f"Bearer {bank.api_key}"}
    with Queued(app) as queued:
        queued.send(auth, warning(external_id="a", risk="low"))
        queued.send(auth, warning(external_id="a", risk="high"))  # a repeat: duplicate
        queued.send(auth, warning(external_id="b", risk="high"))  # same number: merged
        queued.send(bank_auth, warning(external_id="a"))  # another source's own "a"
        queued.send(auth, warning(external_id="c", phone="+8613900139000"))
    # PostgreSQL answers a new case and a repeat with one statement each, without waiting for
    # the writer; the two merges wait for it, in order. SQLite queues them all.
    postgres = is_postgres(engine)
    assert queued.queued == ([False, False, True, True, False] if postgres else [True] * 5)
    (c1, first), (c2, repeat), (c3, merged), (c4, bank_a), (c5, other) = queued.answers
    case_id = first["case_id"]
    assert (c1, first["status"]) == (202, "created")
    assert (c2, repeat) == (200, {"status": "duplicate", "http_status": 200, "case_id": case_id})
    assert (c3, merged["status"], merged["case_id"]) == (202, "merged", case_id)
    assert (c4, bank_a["status"], bank_a["case_id"]) == (202, "merged", case_id)
    assert (c5, other["status"]) == (202, "created")
    assert other["case_id"] != case_id
    with sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        assert case.risk == "high"  # raised by "b"; the duplicate changed nothing
        kinds = [
            e.kind
            for e in session.scalars(
                select(Event).where(Event.case_id == case_id).order_by(Event.id)
            )
        ]
        assert kinds == [
            "case.opened",
            "warning.received",
            "case.merged",
            "warning.received",
            "case.merged",
            "warning.received",
        ]
    assert count(sessions, IncomingWarning) == 4


Store = Callable[[Connection, Any, Sequence[Any], Any], Any]


def test_a_group_that_fails_is_written_request_by_request(
    app: Flask,
    engine: Engine,
    auth: dict[str, str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A race lost to another process can't be timed from a test; a group write that raises
    # IntegrityError, as the lost race does, stands in for it. Alone, each request succeeds.
    real: Store = group_module.accept_warnings

    def lose_races_in_groups(
        conn: Connection, source: Any, warnings: Sequence[Any], now: Any
    ) -> Any:
        if len(warnings) > 1:
            raise IntegrityError("INSERT", {}, Exception("duplicate key (simulated race)"))
        return real(conn, source, warnings, now)

    monkeypatch.setattr(group_module, "accept_warnings", lose_races_in_groups)
    with commits(engine, monkeypatch) as committed, Queued(app) as queued:
        queued.send(auth, warning(external_id="a", phone="+8613800138001", contacts=[CONTACT]))
        queued.send(auth, warning(external_id="b", phone="+8613800138002", contacts=[CONTACT]))
        queued.send(auth, warning(external_id="a", phone="+8613800138001", contacts=[CONTACT]))
    assert queued.queued == [True] * 3
    assert committed == [3]  # the group's own transaction was rolled back
    statuses = [(code, body["status"]) for code, body in queued.answers]
    assert statuses == [(202, "created"), (202, "created"), (200, "duplicate")]
    assert queued.answers[2][1]["case_id"] == queued.answers[0][1]["case_id"]
    assert count(sessions, IncomingWarning) == 2
    assert count(sessions, Case) == 2


def test_a_database_failure_reaches_every_request_of_the_group_and_stores_nothing(
    app: Flask,
    auth: dict[str, str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*args: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("the disk is full (simulated)"))

    monkeypatch.setattr(group_module, "accept_warnings", fail)
    monkeypatch.setattr(group_module, "store_lone", fail)  # PostgreSQL's way for one warning
    with Queued(app) as queued:
        queued.send(auth, warning(external_id="a", phone="+8613800138001"))
        queued.send(auth, warning(external_id="b", phone="+8613800138002"))
    for code, body in queued.answers:
        assert code == 500
        assert body["error"]["code"] == "internal_error"
        assert "not applied" in body["error"]["message"]
    assert count(sessions, IncomingWarning) == 0


def _batch(prefix: str, first_phone: str, size: int) -> dict[str, Any]:
    """A batch of ``size`` new warnings: ids ``prefix-<i>``, numbers ``first_phone`` + 5 digits."""
    return {
        "warnings": [
            warning(external_id=f"{prefix}-{i}", phone=f"{first_phone}{i:05d}") for i in range(size)
        ]
    }


def _post_in_thread(
    app: Flask, auth: dict[str, str], body: Any
) -> tuple[threading.Thread, list[int]]:
    answer: list[int] = []
    client = app.test_client()
    thread = threading.Thread(
        target=lambda: answer.append(
            client.post("/api/v1/warnings", json=body, headers=auth).status_code
        )
    )
    thread.start()
    return thread, answer


def test_a_large_batch_does_not_wait_for_the_group(
    app: Flask, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    body = _batch("w", "+86138001", GROUP_MAX_WARNINGS + 1)
    writer = _writer(app)
    with writer.turn:  # a small request's write in progress
        thread, answer = _post_in_thread(app, auth, body)
        thread.join(30)
        assert answer == [202]
    assert count(sessions, IncomingWarning) == GROUP_MAX_WARNINGS + 1


def test_on_sqlite_big_batches_of_one_process_take_turns(
    app: Flask,
    engine: Engine,
    auth: dict[str, str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SQLite's one write lock: a batch checked alongside another's write would slow the writer
    # down (they share the GIL), so a process runs one big batch at a time, from its checks to
    # its commit. PostgreSQL writes concurrently and does not wait.
    postgres = is_postgres(engine)
    big = _batch("big", "+86138002", GROUP_MAX_WARNINGS + 1)
    small = _batch("small", "+86138003", GROUP_MAX_WARNINGS)
    big_checked = threading.Event()
    real_validate = intake_view.validate_warning

    def validate(item: Any, *args: Any) -> Any:
        if str(item.get("external_id", "")).startswith("big-"):
            big_checked.set()
        return real_validate(item, *args)

    monkeypatch.setattr(intake_view, "validate_warning", validate)
    writer = _writer(app)
    with writer.batch_turn(GROUP_MAX_WARNINGS + 1):  # another big batch is under way
        small_thread, small_answer = _post_in_thread(app, auth, small)
        small_thread.join(30)
        assert small_answer == [202]  # a request of GROUP_MAX_WARNINGS never waits for a turn
        big_thread, big_answer = _post_in_thread(app, auth, big)
        # Without a turn the batch reaches its checks at once; with one it must not within 2 s.
        assert big_checked.wait(30 if postgres else 2) is postgres
        if postgres:
            big_thread.join(30)
        assert big_answer == ([202] if postgres else [])
        stored_meanwhile = count(sessions, IncomingWarning)
        assert stored_meanwhile == GROUP_MAX_WARNINGS + (len(big["warnings"]) if postgres else 0)
    big_thread.join(30)
    assert big_answer == [202]
    assert count(sessions, IncomingWarning) == 2 * GROUP_MAX_WARNINGS + 1


def test_postgres_stores_a_lone_new_warning_while_another_request_holds_the_writer(
    app: Flask, engine: Engine, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    # PostgreSQL takes concurrent writers: the process's lock would only queue the statement
    # behind another request's write and make it part of a dearer group. SQLite has one writer.
    postgres = is_postgres(engine)
    with Queued(app) as queued:
        queued.send(auth, warning(external_id="a", phone="+8613800138001"))
        stored_meanwhile = count(sessions, IncomingWarning)
        answered_meanwhile = queued.answers[0][0]
    assert queued.queued == [not postgres]
    assert (stored_meanwhile, answered_meanwhile) == ((1, 202) if postgres else (0, 0))
    assert queued.answers[0][0] == 202
    assert count(sessions, IncomingWarning) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_lone_statement_chosen_as_a_deadlock_victim_is_written_the_general_way(
    app: Flask,
    auth: dict[str, str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real deadlock can't be timed from a test; the error PostgreSQL raises for its victim
    # stands in for it. The statement wrote nothing, so the request must still be stored.
    from psycopg.errors import DeadlockDetected

    def deadlocked(*args: Any) -> Any:
        raise OperationalError("WITH ...", {}, DeadlockDetected("deadlock detected"))

    monkeypatch.setattr(group_module, "store_lone", deadlocked)
    response = app.test_client().post(
        "/api/v1/warnings", json=warning(external_id="a"), headers=auth
    )
    assert (response.status_code, response.get_json()["status"]) == (202, "created")
    assert count(sessions, IncomingWarning) == 1
    assert count(sessions, Case) == 1


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt or SystemExit reaching the leader mid-write."""


def test_an_interrupted_group_answers_no_request_as_stored(
    app: Flask,
    auth: dict[str, str],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def interrupted(*args: Any) -> Any:
        raise _Interrupt

    monkeypatch.setattr(group_module, "accept_warnings", interrupted)
    writer = _writer(app)
    outcomes: dict[int, int | BaseException] = {}

    def send(i: int) -> None:
        body = warning(external_id=f"i-{i}", phone=f"+861380013800{i}", contacts=[CONTACT])
        try:
            outcomes[i] = app.test_client().post("/api/v1/warnings", json=body, headers=auth)
            outcomes[i] = outcomes[i].status_code  # type: ignore[union-attr]
        except BaseException as exc:  # the test app lets server errors through
            outcomes[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    with writer.turn:  # a write in progress: the three queue for one group
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while writer.queued < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert writer.queued == 3
    for thread in threads:
        thread.join(30)
    # The leader's thread carries the interrupt; the two others fail, never answered 2xx.
    assert sum(isinstance(o, _Interrupt) for o in outcomes.values()) == 1
    others = [o for o in outcomes.values() if not isinstance(o, _Interrupt)]
    assert len(others) == 2
    assert all(
        (isinstance(o, RuntimeError) and "interrupted" in str(o)) or o == 500 for o in others
    ), others
    # Told why: the writer was interrupted (not an empty result that fails further on).
    assert "the intake writer was interrupted" in caplog.text or all(
        isinstance(o, RuntimeError) for o in others
    )
    assert count(sessions, Case) == 0
