"""PostgreSQL: a lone warning that opens a case is stored by one statement (robot.intake.lone).

It must leave exactly what the general path (accept_warnings in a transaction) leaves, answer a
duplicate from what is stored, write nothing when the number has an open case or a race is lost,
and wake the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, event, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

import robot.intake.group as group_module
from robot.app import Services
from robot.intake.lone import fits, store_lone
from robot.intake.service import NewCase, Status, accept_warnings
from robot.intake.validation import WarningInput, validate_warning
from robot.models import Case, Event, IncomingWarning
from robot.sources import Caller, NewSource
from robot.wakeup import WakeListener

from .test_intake import count, post, warning

#: The database_url fixture's PostgreSQL case only.
POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def checked(**fields: Any) -> WarningInput:
    result = validate_warning(warning(**fields), "CN", NOW)
    assert isinstance(result, WarningInput), result
    return result


def caller(source: NewSource) -> Caller:
    return Caller(source.source.id, source.source.name, False, None)


@contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def stored(sessions: sessionmaker[Session], case_id: int) -> dict[str, Any]:
    """What is written for a case: its row, its warnings and its events, ids left out."""
    with sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        row = {c.key: getattr(case, c.key) for c in Case.__table__.columns if c.key != "id"}
        warnings = session.scalars(
            select(IncomingWarning).where(IncomingWarning.case_id == case_id)
        ).all()
        events = session.scalars(
            select(Event).where(Event.case_id == case_id).order_by(Event.id)
        ).all()
        return {
            "case": row,
            "warnings": [(w.source_id, w.external_id, w.payload, w.received_at) for w in warnings],
            "events": [(e.kind, e.actor, e.data, e.at, e.attempt_id) for e in events],
        }


@POSTGRES_ONLY
def test_it_writes_what_the_general_path_writes(
    engine: Engine, sessions: sessionmaker[Session], source: NewSource
) -> None:
    fields = {"name": "Li Hua", "area": "Xihu", "address": "1 Lake Road", "language": "zh"}
    with autocommit(engine) as conn:
        lone = store_lone(
            conn, caller(source), checked(external_id="x", phone="13800138001", **fields), NOW
        )
    with engine.begin() as conn:
        (general,) = accept_warnings(
            conn, caller(source), [checked(external_id="y", phone="13800138002", **fields)], NOW
        )
    assert lone is not None
    assert (lone.status, general.status) == (Status.CREATED, Status.CREATED)
    ours, theirs = stored(sessions, lone.case_id), stored(sessions, general.case_id)
    assert ours["case"]["open_key"] == ours["case"]["phone"] == "+8613800138001"
    numbers = {"phone": "+8613800138001", "open_key": "+8613800138001"}
    assert ours["case"] == theirs["case"] | numbers
    assert ours["warnings"] == [
        (
            source.source.id,
            "x",
            theirs["warnings"][0][2] | {"external_id": "x", "phone": "13800138001"},
            NOW,
        )
    ]
    assert [e[0] for e in ours["events"]] == ["case.opened", "warning.received"]
    opened, received = ours["events"]
    assert opened[:2] == theirs["events"][0][:2] and opened[3:] == theirs["events"][0][3:]
    assert opened[2]["phone"] != theirs["events"][0][2]["phone"]  # masked, each its own number
    kind, actor, data, at, attempt_id = theirs["events"][1]
    assert received == (kind, actor, data | {"external_id": "x"}, at, attempt_id)


@POSTGRES_ONLY
def test_a_request_of_one_new_warning_is_two_statements_and_wakes_the_worker(
    client: FlaskClient, auth: dict[str, str], engine: Engine, sessions: sessionmaker[Session]
) -> None:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0])

    listener = WakeListener(engine)
    event.listen(engine, "before_cursor_execute", record)
    try:
        answer = post(client, auth, warning(external_id="one", phone="+8613800138001"))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    try:
        assert answer.status_code == 202
        assert answer.get_json()["status"] == "created"
        assert listener.wait(2.0)
    finally:
        listener.close()
    assert seen == ["SELECT", "WITH"]  # the key, then the warning: no BEGIN, no COMMIT
    assert count(sessions, IncomingWarning) == 1
    assert count(sessions, Event) == 2


@POSTGRES_ONLY
def test_a_duplicate_is_answered_from_what_is_stored(
    engine: Engine, sessions: sessionmaker[Session], source: NewSource
) -> None:
    with autocommit(engine) as conn:
        first = store_lone(conn, caller(source), checked(external_id="dup"), NOW)
        listener = WakeListener(engine)
        try:
            again = store_lone(
                conn, caller(source), checked(external_id="dup", phone="13900139000"), NOW
            )
            assert not listener.wait(0.2)  # nothing new: nobody is woken
        finally:
            listener.close()
    assert first is not None and again is not None
    assert (again.status, again.case_id) == (Status.DUPLICATE, first.case_id)
    assert count(sessions, Case) == 1
    assert count(sessions, IncomingWarning) == 1


@POSTGRES_ONLY
def test_a_number_with_an_open_case_writes_nothing_and_merges_the_general_way(
    client: FlaskClient,
    auth: dict[str, str],
    engine: Engine,
    sessions: sessionmaker[Session],
    source: NewSource,
) -> None:
    first = post(client, auth, warning(external_id="a", risk="medium"))
    with autocommit(engine) as conn:
        assert store_lone(conn, caller(source), checked(external_id="b"), NOW) is None
    assert count(sessions, IncomingWarning) == 1
    merged = post(client, auth, warning(external_id="b", risk="high"))
    assert merged.status_code == 202
    assert merged.get_json() == {
        "status": "merged",
        "http_status": 202,
        "case_id": first.get_json()["case_id"],
    }
    with sessions() as session:
        case = session.get(Case, first.get_json()["case_id"])
        assert case is not None and case.risk == "high"


class InThread:
    """Run ``work`` in a thread and keep what it returns."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.result: list[Any] = []
        self.thread = threading.Thread(target=lambda: self.result.append(work()))
        self.thread.start()

    def waiting(self) -> bool:
        self.thread.join(0.5)
        return self.thread.is_alive()

    def finish(self) -> Any:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.result[0]


def behind_a_rival(
    engine: Engine, rival_writes: Callable[[Connection], Any], work: Callable[[], Any]
) -> tuple[Any, Any]:
    """Run ``work`` while another transaction holds what ``rival_writes`` wrote, uncommitted:
    check that the work waits for it, commit the rival, and return both their results."""
    rival = engine.connect()
    try:
        transaction = rival.begin()
        theirs = rival_writes(rival)
        request = InThread(work)
        assert request.waiting()
        transaction.commit()
        return theirs, request.finish()
    finally:
        rival.close()


def storing(source: NewSource, external_id: str, **fields: Any) -> Callable[[Connection], Any]:
    """The general path storing one warning in the caller's transaction."""
    warning = checked(external_id=external_id, **fields)
    return lambda conn: accept_warnings(conn, caller(source), [warning], NOW)


def in_transaction(engine: Engine, write: Callable[[Connection], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with engine.begin() as conn:
            return write(conn)

    return run


def written_alone(app: Any, source: NewSource, warning: WarningInput) -> Callable[[], Any]:
    """A request of one warning, as the intake writes it."""
    services: Services = app.extensions["robot"]
    return lambda: services.intake_writer.store(caller(source), [warning])


@pytest.fixture
def lone_outcomes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each store_lone the writer runs comes to: a result, None, or the exception's name."""
    seen: list[str] = []
    real = group_module.store_lone

    def recorded(*args: Any) -> Any:
        try:
            result = real(*args)
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise
        seen.append("none" if result is None else result.status.value)
        return result

    monkeypatch.setattr(group_module, "store_lone", recorded)
    return seen


@POSTGRES_ONLY
def test_a_case_race_lost_writes_nothing_and_the_writer_merges_instead(
    app: Any,
    engine: Engine,
    sessions: sessionmaker[Session],
    source: NewSource,
    lone_outcomes: list[str],
) -> None:
    # The rival opens a case for the number and has not committed: the statement does not see
    # it, waits on the unique index, and fails once the rival commits.
    rival_case = NewCase(caller(source), checked(external_id="rival"), NOW).row()
    _, answers = behind_a_rival(
        engine,
        lambda conn: conn.execute(insert(Case.__table__).values(rival_case)),
        written_alone(app, source, checked(external_id="w")),
    )
    assert lone_outcomes == ["IntegrityError"]
    with sessions() as session:
        case_id = session.scalar(select(Case.id))
    assert [(a.status, a.case_id) for a in answers] == [(Status.MERGED, case_id)]
    assert count(sessions, Case) == 1
    assert count(sessions, IncomingWarning) == 1


@POSTGRES_ONLY
def test_a_warning_race_lost_after_the_case_was_inserted_leaves_no_case(
    app: Any,
    engine: Engine,
    sessions: sessionmaker[Session],
    source: NewSource,
    lone_outcomes: list[str],
) -> None:
    # The rival stored the same external id, for another number, and has not committed. The
    # statement inserts its case, then waits on the warnings' unique index and fails: the case
    # must go with it. The writer then finds the rival's warning: a duplicate.
    (theirs,), answers = behind_a_rival(
        engine,
        storing(source, "same", phone="13900139000"),
        written_alone(app, source, checked(external_id="same")),
    )
    assert lone_outcomes == ["IntegrityError"]
    assert [(a.status, a.case_id) for a in answers] == [(Status.DUPLICATE, theirs.case_id)]
    with sessions() as session:
        assert session.scalars(select(Case.phone)).all() == ["+8613900139000"]
    assert count(sessions, IncomingWarning) == 1
    assert count(sessions, Event) == 2  # the rival's two


@POSTGRES_ONLY
def test_a_merge_waits_for_a_concurrent_merge_and_keeps_its_risk_raise(
    engine: Engine, sessions: sessionmaker[Session], source: NewSource
) -> None:
    (opened,) = in_transaction(engine, storing(source, "a", risk="low"))()
    # The case is locked as it is read: the medium warning waits for the high one's commit.
    _, (ours,) = behind_a_rival(
        engine,
        storing(source, "b", risk="high"),
        in_transaction(engine, storing(source, "c", risk="medium")),
    )
    assert (ours.status, ours.case_id) == (Status.MERGED, opened.case_id)
    with sessions() as session:
        case = session.get(Case, opened.case_id)
        assert case is not None
        assert (case.risk, case.version) == ("high", 2)


@POSTGRES_ONLY
def test_a_case_closed_while_a_merge_waited_gets_a_new_case(
    engine: Engine, sessions: sessionmaker[Session], source: NewSource
) -> None:
    (opened,) = in_transaction(engine, storing(source, "a"))()
    close = (
        update(Case.__table__)
        .where(Case.__table__.c.id == opened.case_id)
        .values(open_key=None, state="closed")
    )
    _, (ours,) = behind_a_rival(
        engine, lambda conn: conn.execute(close), in_transaction(engine, storing(source, "b"))
    )
    assert ours.status == Status.CREATED and ours.case_id != opened.case_id
    with sessions() as session:
        new = session.get(Case, ours.case_id)
        assert new is not None and new.open_key == "+8613800138000"


def test_only_one_warning_without_contacts_fits() -> None:
    contact = {"phone": "13900139000", "relation": "child"}
    assert fits([checked()])
    assert not fits([checked(), checked(external_id="w-2")])
    assert not fits([checked(contacts=[contact])])
    assert not fits([])
