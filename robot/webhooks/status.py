"""Status callbacks for calls and texts, the busiest webhooks: one read, a few Core writes.

Every call brings back four status callbacks and every text two or three. Profiles put 85% of
such a request in loading and flushing ORM objects (the attempt, its case, an event), so this
path reads the attempt's row once, applies the callback to a plain copy, and writes only the
columns that changed, the timeline events and, when the attempt finished, the case's review
mark. The rules themselves live in :mod:`robot.webhooks.outcomes`, shared with the ORM paths.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Update, bindparam, insert, select, update

from robot.app import services
from robot.db import is_postgres
from robot.models import Attempt, Base, Case, Event, utcnow
from robot.timeline import event_row

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


def apply_status(
    code: str,
    params: Mapping[str, str],
    rule: Rule,
    kind: str,
    on_finished: Callable[[Applied], None] | None = None,
) -> None:
    """Apply one status callback for the attempt ``code`` in one transaction."""
    svc = services()
    wake = False
    # A bare connection, not a Session: the Session's own bookkeeping costs as much as the
    # statements here. Callers that need the ORM join this transaction (see Applied.conn).
    with svc.engine.begin() as conn:
        read = _READ_LOCKED if is_postgres(conn) else _READ
        row = conn.execute(read, {"code": code}).first()
        if row is None:
            return  # not ours (or long gone): Twilio gets its 200 and stops retrying
        values: tuple[Any, ...] = tuple(row)
        attempt = AttemptRow(*values[: len(_COLUMNS)])
        case_phone: str = values[-2]
        next_review_at: datetime | None = values[-1]
        before = [getattr(attempt, c.name) for c in _COLUMNS]
        now = utcnow()
        if not rule(attempt, params, now):
            return  # a repeat, or older than what we have
        changed = {
            c.name: getattr(attempt, c.name)
            for c, old in zip(_COLUMNS, before, strict=True)
            if getattr(attempt, c.name) != old
        }
        conn.execute(_update_attempt(tuple(changed)), {"attempt_id": attempt.id, **changed})
        events = [event_row(attempt.case_id, kind, PROVIDER, params, attempt_id=attempt.id, at=now)]
        if attempt.outcome is not None:
            data = {"channel": attempt.channel, "outcome": attempt.outcome}
            done = event_row(
                attempt.case_id, "attempt.finished", PROVIDER, data, attempt_id=attempt.id, at=now
            )
            events.append(done)
            # The worker applies the policy next (casework.touch, without loading the case).
            conn.execute(_TOUCH_CASE, {"case_id": attempt.case_id, "now": now})
            next_review_at = now
        conn.execute(_ADD_EVENTS, events)
        if attempt.outcome is not None and on_finished is not None:
            on_finished(Applied(attempt, case_phone, conn, now))
        # Wake the worker only when the case is due for a review now.
        wake = next_review_at is not None and next_review_at <= now
        if wake:
            svc.waker.in_transaction(conn)
    if wake:
        svc.waker.after_commit()
