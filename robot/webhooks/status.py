"""Status callbacks for calls and texts, the busiest webhooks: one read, a few Core writes.

An answered call brings back two status callbacks (one that is not answered, one), and every
text two or three. Profiles put 85% of such a request in loading and flushing ORM objects (the
attempt, its case, an event), so this path reads the attempt's row once, applies the callback
to a plain copy, and writes only the columns that changed, the timeline events and, when the
attempt finished, the case's review mark. The rules themselves live in
:mod:`robot.webhooks.outcomes`, shared with the ORM paths.

On PostgreSQL every statement is a round trip, and a transaction adds two more (psycopg sends
BEGIN and COMMIT on their own). So the callback reads the row outside a transaction and
writes everything in one statement (UPDATE … RETURNING, the events' INSERT, the case's touch
and the wake-up NOTIFY as CTEs of one query, atomic on its own) whose UPDATE only matches if
the row is still exactly what the rules were applied to. If another writer changed the row in
between, nothing is written and the callback is applied again under a row lock, as before.

On SQLite every callback writes under the one write lock of all processes, so the callbacks that
arrive while one is being written share the next transaction (:mod:`robot.webhooks.group`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    Update,
    bindparam,
    func,
    insert,
    select,
    union_all,
    update,
)

from robot.app import Services, services
from robot.db import is_postgres
from robot.models import Attempt, Base, Case, Event, utcnow
from robot.timeline import EVENT_COLUMNS, event_row
from robot.wakeup import notify_call
from robot.webhooks.group import StatusGroup

#: The actor of every event a provider callback leaves.
PROVIDER = "provider"

_attempts = Base.metadata.tables[Attempt.__tablename__]
_cases = Base.metadata.tables[Case.__tablename__]
_events = Base.metadata.tables[Event.__tablename__]


@dataclass(slots=True)
class AttemptRow:
    """The columns a status callback reads or changes, detached from any session."""

    id: int
    case_id: int
    channel: str
    purpose: str
    to_phone: str
    state: str
    provider_sid: str | None
    provider_status: str | None
    last_sequence: int
    outcome: str | None
    answered_by: str | None
    answered_at: datetime | None
    digits: str | None
    error_code: str | None
    duration_seconds: int | None
    finished_at: datetime | None
    lease_until: datetime | None


_COLUMNS = [_attempts.c[f.name] for f in fields(AttemptRow)]
_NAMES = tuple(c.name for c in _COLUMNS)
#: Everything the rules may read: the one-statement write only applies if none of it moved.
_COMPARED = tuple(_COLUMNS[1:])
assert _NAMES[0] == "id"


@dataclass(frozen=True)
class Applied:
    """What a callback did, for the caller's follow-up (e.g. blocking a channel)."""

    attempt: AttemptRow
    case_phone: str
    #: The callback's transaction: a Session(bind=conn) joins it for ORM work.
    conn: Connection
    now: datetime


#: Updates the attempt from the callback's parameters; False when it changes nothing.
Rule = Callable[[AttemptRow, Mapping[str, str], datetime], bool]


@dataclass(frozen=True)
class FollowUp:
    """Work after a finishing callback, in its transaction (it may use the ORM)."""

    #: Whether the finished attempt needs it (the attempt, the case's number). Asked first:
    #: only then does the callback take the locked transaction; the others stay one statement.
    wanted: Callable[[AttemptRow, str], bool]
    run: Callable[[Applied], None]


# Statements are built once: building one costs 5x executing it (SQLAlchemy caches the
# compiled form of a statement object, not the work of constructing it).
_READ = (
    select(*_COLUMNS, _cases.c.phone, _cases.c.next_review_at)
    .select_from(_attempts.join(_cases, _cases.c.id == _attempts.c.case_id))
    .where(_attempts.c.code == bindparam("code"))
)
# PostgreSQL: lock the attempt, so two callbacks for one call never apply to the same old row.
# SQLite has one writer at a time anyway.
_READ_LOCKED = _READ.with_for_update(of=_attempts)
_TOUCH_CASE = (
    update(_cases)
    .where(_cases.c.id == bindparam("case_id"))
    .values(
        updated_at=bindparam("now"), version=_cases.c.version + 1, next_review_at=bindparam("now")
    )
)
_ADD_EVENTS = insert(_events)


@functools.cache
def _update_attempt(changed: tuple[str, ...]) -> Update:
    """UPDATE of just these columns (a handful of shapes in all: one per kind of callback)."""
    return (
        update(_attempts)
        .where(_attempts.c.id == bindparam("attempt_id"))
        .values({name: bindparam(name) for name in changed})
    )


@functools.cache
def _write_all(changed: tuple[str, ...], events: int, finished: bool, wake: bool) -> Select[Any]:
    """PostgreSQL: the whole write as one statement; its one row says whether it applied.

    UPDATE attempts (only if every compared column still holds what was read) RETURNING id,
    then for each returned row: the events, the case's review mark, the NOTIFY.
    """
    attempt = (
        update(_attempts)
        .where(
            _attempts.c.id == bindparam("attempt_id"),
            *(c.is_not_distinct_from(bindparam(f"old_{c.name}", type_=c.type)) for c in _COMPARED),
        )
        # Prefixed names: a parameter named like a column of any table in the statement
        # would be added to that table's SET by SQLAlchemy (cases.state, for one).
        .values({name: bindparam(f"new_{name}", type_=_attempts.c[name].type) for name in changed})
        .returning(_attempts.c.id, _attempts.c.case_id)
        .cte("changed_attempt")
    )
    rows = []
    for i in range(events):
        row = [
            bindparam(f"e{i}_{name}", type_=_events.c[name].type)
            for name in ("kind", "actor", "data", "at")
        ]
        rows.append(select(attempt.c.case_id, *row[:3], attempt.c.id, row[3]))
    # One INSERT for the events, in order: separate data-modifying CTEs run in an order
    # PostgreSQL leaves open, and the timeline orders events of the same moment by id.
    values = rows[0] if len(rows) == 1 else union_all(*rows)
    ctes = [insert(_events).from_select(list(EVENT_COLUMNS), values).cte("events")]
    if finished:
        touch = (
            update(_cases)
            .where(_cases.c.id == attempt.c.case_id)
            .values(
                updated_at=bindparam("now"),
                version=_cases.c.version + 1,
                next_review_at=bindparam("now"),
            )
        )
        ctes.append(touch.cte("touched_case"))
    applied = select(func.count()).select_from(attempt).scalar_subquery()
    if not wake:
        return select(applied).add_cte(*ctes)
    # A plain SELECT in a WITH only runs if the query reads it (data-modifying CTEs always run).
    notify = select(notify_call()).select_from(attempt).cte("woke")
    woke = select(func.count()).select_from(notify).scalar_subquery()
    return select(applied, woke).add_cte(*ctes)


def apply_status(
    code: str,
    params: Mapping[str, str],
    rule: Rule,
    kind: str,
    on_finished: FollowUp | None = None,
) -> None:
    """Apply one status callback for the attempt ``code``, atomically."""
    svc = services()
    wake: bool | None = None
    if is_postgres(svc.engine):
        # Outside a transaction: one round trip to read, one to write.
        with svc.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            wake = _apply(conn, code, params, rule, kind, on_finished, locked=False)
    if wake is None:
        # SQLite; or another writer changed the attempt between the read and the write:
        # apply the callback again, this time to the row locked in a transaction.

        def write(conn: Connection) -> bool:
            locked = _apply(conn, code, params, rule, kind, on_finished, locked=True)
            assert locked is not None  # only an unlocked write can find the row moved
            return locked

        if is_postgres(svc.engine):
            with svc.engine.begin() as conn:
                wake = write(conn)
        else:
            wake = status_group(svc).apply(write)  # SQLite: shares a transaction if it can
    if wake:
        svc.waker.after_commit()  # SQLite: a datagram (PostgreSQL notified in the write)


def status_group(svc: Services) -> StatusGroup:
    """The app's group writer (the tests run several apps in one process; setdefault is atomic)."""
    group = svc.extras.get("status_group")
    if group is None:
        group = svc.extras.setdefault("status_group", StatusGroup(svc.engine))
    assert isinstance(group, StatusGroup)
    return group


def _apply(
    conn: Connection,
    code: str,
    params: Mapping[str, str],
    rule: Rule,
    kind: str,
    on_finished: FollowUp | None,
    *,
    locked: bool,
) -> bool | None:
    """Read, apply ``rule``, write; whether to wake the worker, or None if the row moved.

    Unlocked (PostgreSQL, autocommit), None means nothing was written: apply it again locked.
    """
    postgres = is_postgres(conn)
    read = _READ_LOCKED if postgres and locked else _READ
    row = conn.execute(read, {"code": code}).first()
    if row is None:
        return False  # not ours (or long gone): Twilio gets its 200 and stops retrying
    values: tuple[Any, ...] = tuple(row)
    attempt = AttemptRow(*values[: len(_COLUMNS)])
    case_phone: str = values[-2]
    next_review_at: datetime | None = values[-1]
    now = utcnow()
    if not rule(attempt, params, now):
        return False  # a repeat, or older than what we have
    finished = attempt.outcome is not None
    follow_up = (
        on_finished
        if finished and on_finished and on_finished.wanted(attempt, case_phone)
        else None
    )
    if follow_up is not None and not locked:
        return None  # the follow-up may use the ORM: it needs the locked transaction
    changed = {
        name: new
        for name, old, new in zip(
            _NAMES, values, (getattr(attempt, name) for name in _NAMES), strict=False
        )
        if new != old
    }
    events = [event_row(attempt.case_id, kind, PROVIDER, params, attempt_id=attempt.id, at=now)]
    if finished:
        data = {"channel": attempt.channel, "outcome": attempt.outcome}
        events.append(
            event_row(
                attempt.case_id, "attempt.finished", PROVIDER, data, attempt_id=attempt.id, at=now
            )
        )
        # The worker applies the policy next (casework.touch, without loading the case).
        next_review_at = now
    # Wake the worker only when the case is due for a review now.
    wake = next_review_at is not None and next_review_at <= now
    if postgres:
        bound: dict[str, Any] = {"attempt_id": attempt.id, "now": now}
        for name, new in changed.items():
            bound[f"new_{name}"] = new
        for column, old in zip(_COMPARED, values[1 : len(_COLUMNS)], strict=True):
            bound[f"old_{column.name}"] = old
        for i, event in enumerate(events):
            for name in ("kind", "actor", "data", "at"):
                bound[f"e{i}_{name}"] = event[name]
        statement = _write_all(tuple(changed), len(events), finished, wake)
        if not conn.execute(statement, bound).scalar():
            return None
    else:
        conn.execute(_update_attempt(tuple(changed)), {"attempt_id": attempt.id, **changed})
        if finished:
            conn.execute(_TOUCH_CASE, {"case_id": attempt.case_id, "now": now})
        conn.execute(_ADD_EVENTS, events)
    if follow_up is not None:
        follow_up.run(Applied(attempt, case_phone, conn, now))
    return wake
