"""Turn checked warnings into cases: idempotent per (source, external id), one open case per number.

Each warning is written inside a savepoint. If a concurrent request got there first (the unique
index on (source, external id), or on the open case's number, says so), the savepoint is rolled
back and the warning is read again: it becomes a duplicate of, or merges into, the winner's case.

:func:`accept_warnings` stores a whole request at once: a few set-wise reads, then one INSERT per
table for all its rows (the ORM's per-object flushes cost milliseconds a warning). It gives the
same results, rows and timeline events, in the same order, as :func:`accept_warning` on each
warning in turn; if a concurrent request wins a race, the caller's transaction is rolled back and
the warnings go one by one through :func:`accept_each`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from robot.bulk import IN_LIST_CHUNK, BulkInsert, KeyedRead
from robot.intake.validation import WarningInput
from robot.models import Base, Case, CaseState, Contact, Event, IncomingWarning, Risk
from robot.phones import mask
from robot.sources import Caller
from robot.timeline import EVENT_COLUMNS, event_row, record

#: How often one warning is retried after losing a race; two is already rare.
_MAX_RACES = 5


class Status(StrEnum):
    CREATED = "created"  #: a new case was opened
    MERGED = "merged"  #: joined the open case for the same number
    DUPLICATE = "duplicate"  #: this source sent this external id before


@dataclass(frozen=True)
class Accepted:
    status: Status
    case_id: int


def accept_warning(
    session: Session, source: Caller, warning: WarningInput, now: datetime
) -> Accepted:
    """Store one warning and open or join its case, in the caller's transaction."""
    for _ in range(_MAX_RACES):
        existing = _existing_case_id(session, source.id, warning.external_id)
        if existing is not None:
            return Accepted(Status.DUPLICATE, existing)
        try:
            with session.begin_nested():
                return _store(session, source, warning, now)
        except IntegrityError:
            continue  # lost a race with a concurrent request; read again
    raise RuntimeError("warning could not be stored after repeated conflicts")


def _existing_case_id(session: Session, source_id: int, external_id: str) -> int | None:
    return session.scalar(
        select(IncomingWarning.case_id).where(
            IncomingWarning.source_id == source_id, IncomingWarning.external_id == external_id
        )
    )


def _store(session: Session, source: Caller, warning: WarningInput, now: datetime) -> Accepted:
    actor = f"source:{source.name}"
    # FOR UPDATE: two warnings merging into one case at once must not lose a risk raise.
    case = session.scalar(select(Case).where(Case.open_key == warning.phone.e164).with_for_update())
    if case is None:
        case = _open_case(session, source, warning, now)
        status = Status.CREATED
    else:
        _merge(session, case, warning, now, actor)
        status = Status.MERGED
    session.add(
        IncomingWarning(
            source_id=source.id,
            external_id=warning.external_id,
            case_id=case.id,
            payload=warning.raw,
            received_at=now,
        )
    )
    _add_contacts(session, case, warning, now)
    record(session, case.id, "warning.received", actor, received_data(warning, status), at=now)
    session.flush()
    return Accepted(status, case.id)


def _open_case(session: Session, source: Caller, warning: WarningInput, now: datetime) -> Case:
    case = Case(**NewCase(source, warning, now).row())
    session.add(case)
    session.flush()  # the unique open_key index fires here if another request won the race
    record(session, case.id, "case.opened", f"source:{source.name}", opened_data(case), at=now)
    return case


def _merge(session: Session, case: Case, warning: WarningInput, now: datetime, actor: str) -> None:
    changes = _merge_into(case, warning, now)
    record(
        session,
        case.id,
        "case.merged",
        actor,
        {"external_id": warning.external_id, **changes},
        at=now,
    )


def _merge_into(case: Any, warning: WarningInput, now: datetime) -> dict[str, object]:
    """Apply a warning to its open case (a Case or a row not yet written); returns the changes."""
    changes: dict[str, object] = {}
    if warning.risk.rank > Risk(case.risk).rank:
        changes["risk"] = [case.risk, warning.risk.value]
        case.risk = warning.risk.value
    # Fill in what the case did not know yet; never overwrite what a person may have checked.
    for field in ("name", "language", "area", "address"):
        value = getattr(warning, field)
        if value and not getattr(case, field):
            setattr(case, field, value)
            changes[field] = "added"
    if warning.trigger and not case.trigger:
        case.trigger = warning.trigger.value
    case.updated_at = now
    case.version += 1
    case.next_review_at = now  # a higher risk may mean a steeper ladder, at once
    return changes


def _add_contacts(session: Session, case: Case, warning: WarningInput, now: datetime) -> None:
    if not warning.contacts:
        return
    known = set(session.scalars(select(Contact.phone).where(Contact.case_id == case.id)))
    for contact in warning.contacts:
        if contact.phone.e164 in known or contact.phone.e164 == case.phone:
            continue
        known.add(contact.phone.e164)
        session.add(
            Contact(
                case_id=case.id,
                phone=contact.phone.e164,
                relation=contact.relation,
                name=contact.name,
                created_at=now,
            )
        )


# --- many at once -----------------------------------------------------------------------------

# Built once: constructing a statement costs several times what executing a cached one does.
_warnings = Base.metadata.tables[IncomingWarning.__tablename__]
_cases = Base.metadata.tables[Case.__tablename__]
_contacts = Base.metadata.tables[Contact.__tablename__]
_STORED_IDS = KeyedRead(
    select(_warnings.c.external_id, _warnings.c.case_id).where(
        _warnings.c.source_id == bindparam("source_id")
    ),
    _warnings.c.external_id,
)
# Locked in open_key order, whatever plan PostgreSQL picks: two batches that share numbers
# then take their locks in the same order, and one waits for the other instead of deadlocking.
_OPEN_CASE_IDS = KeyedRead(
    select(_cases.c.id).order_by(_cases.c.open_key).with_for_update(), _cases.c.open_key
)
_LOOK_UP_ONE = select(
    select(_warnings.c.case_id)
    .where(
        _warnings.c.source_id == bindparam("source_id"),
        _warnings.c.external_id == bindparam("external_id"),
    )
    .scalar_subquery(),
    select(_cases.c.id).where(_cases.c.open_key == bindparam("key")).scalar_subquery(),
)
_INSERT_CASE = insert(_cases).returning(_cases.c.id)
# A new case's open_key is its number (phone: the same value, typed not-null).
_NEW_CASE_IDS = KeyedRead(select(_cases.c.id, _cases.c.phone), _cases.c.open_key)
_KNOWN_CONTACTS = KeyedRead(select(_contacts.c.case_id, _contacts.c.phone), _contacts.c.case_id)
_INSERT_CONTACTS = insert(_contacts)
#: The columns of :func:`warning_row`, in its order.
WARNING_COLUMNS = ("source_id", "external_id", "case_id", "payload", "received_at")
_ADD_WARNINGS = BulkInsert(_warnings, WARNING_COLUMNS)
_ADD_EVENTS = BulkInsert(Base.metadata.tables[Event.__tablename__], EVENT_COLUMNS)


class NewCase:
    """A case this request opens, before it is written (attributes as on Case)."""

    #: The columns :meth:`row` gives, in order.
    COLUMNS = (
        "source_id",
        "phone",
        "open_key",
        "region",
        "timezone",
        "name",
        "language",
        "area",
        "address",
        "risk",
        "fraud_type",
        "trigger",
        "state",
        "critical",
        "opened_at",
        "updated_at",
        "next_review_at",
        "version",
        "sms_blocked",
        "calls_blocked",
        "drill",
    )

    def __init__(self, source: Caller, warning: WarningInput, now: datetime) -> None:
        self.id = 0
        self.source_id = source.id
        self.phone = warning.phone.e164
        self.open_key = warning.phone.e164
        self.region = warning.phone.region
        self.timezone = warning.phone.timezone
        self.name = warning.name
        self.language = warning.language
        self.area = warning.area
        self.address = warning.address
        self.risk = warning.risk.value
        self.fraud_type = warning.fraud_type.value
        self.trigger = warning.trigger.value if warning.trigger else None
        self.state = CaseState.OPEN.value
        self.critical = False
        self.opened_at = now
        self.updated_at = now
        # The worker looks at the case at once: it schedules and places the first SMS and call.
        self.next_review_at = now
        self.version = 0
        # Written out, not left to the columns' defaults: INSERTs inside a WITH (robot.intake.
        # lone) get no client-side defaults from SQLAlchemy.
        self.sms_blocked = False
        self.calls_blocked = False
        self.drill = False

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}


_ADD_CASES = BulkInsert(_cases, NewCase.COLUMNS)


@dataclass
class _Step:
    """What one warning of a request comes to: a duplicate (``ref``) or a row to write."""

    status: Status
    #: For a duplicate: the case id it was stored with, or the index of the earlier warning.
    ref: int
    warning: WarningInput | None = None
    case: Case | NewCase | None = None
    kind: str = ""
    data: dict[str, Any] | None = None
    #: The duplicate is of a warning earlier in this request (``ref`` is its index).
    earlier: bool = False


def accept_warnings(
    conn: Connection, source: Caller, warnings: Sequence[WarningInput], now: datetime
) -> list[Accepted]:
    """Store a request's warnings at once: as :func:`accept_warning` on each in turn, faster.

    It runs on a bare connection (a Session's bookkeeping costs as much as the statements), in the
    caller's transaction. There is no savepoint (for a single warning it cost a fifth of the
    request): if a concurrent
    request wins a race, IntegrityError is raised, here or at the commit, and the transaction is
    spoiled. The caller rolls it back and stores the warnings with :func:`accept_each` in a new
    one, where each warning takes its own savepoint and reads the winner's rows.
    """
    if not warnings:
        return []
    # Merges change ORM Case objects: a Session joined to the caller's transaction writes them.
    # Only then: setting one up and flushing it cost a tenth of a single new warning.
    merging = _MergeSession(conn)
    try:
        results = _store_many(conn, merging, source, warnings, now)
        merging.flush()
    finally:
        merging.close()
    return results


def accept_each(
    conn: Connection, source: Caller, warnings: Sequence[WarningInput], now: datetime
) -> list[Accepted]:
    """Store warnings one at a time in the caller's transaction, each in a savepoint that
    survives a lost race (the slow, sure way)."""
    with Session(bind=conn) as session:
        results = [accept_warning(session, source, warning, now) for warning in warnings]
        session.flush()
    return results


class _MergeSession:
    """A Session on the caller's connection, opened only when a warning merges into a case."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._session: Session | None = None

    def cases(self, ids: Sequence[int]) -> list[Case]:
        if self._session is None:
            self._session = Session(bind=self._conn)
        # FOR UPDATE (PostgreSQL): a concurrent merge waits, and a case closed meanwhile comes
        # back with no open_key (PostgreSQL reads the newest version of a row it had to wait for).
        query = select(Case).where(Case.id.in_(ids)).with_for_update()
        return list(self._session.scalars(query))

    def flush(self) -> None:
        if self._session is not None:
            self._session.flush()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def _store_many(
    conn: Connection,
    merging: _MergeSession,
    source: Caller,
    warnings: Sequence[WarningInput],
    now: datetime,
) -> list[Accepted]:
    actor = f"source:{source.name}"
    # Core statements: ORM bulk inserts cost several times more.
    seen, open_ids = _look_up(conn, source, warnings)
    open_cases: dict[str, Case | NewCase] = {}
    for i in range(0, len(open_ids), IN_LIST_CHUNK):
        # Only merges need the case itself, as an ORM object: accept_warnings flushes it.
        for found in merging.cases(open_ids[i : i + IN_LIST_CHUNK]):
            if found.open_key is not None:
                open_cases[found.open_key] = found

    # First pass: what happens to each warning, in order (a later one may join an earlier one).
    plan: list[_Step] = []
    new_cases: list[NewCase] = []
    first: dict[str, int] = {}
    for warning in warnings:
        if warning.external_id in seen:
            plan.append(_Step(Status.DUPLICATE, seen[warning.external_id]))
            continue
        if warning.external_id in first:  # sent twice in this request: the first one counts
            plan.append(_Step(Status.DUPLICATE, first[warning.external_id], earlier=True))
            continue
        first[warning.external_id] = len(plan)
        case: Case | NewCase | None = open_cases.get(warning.phone.e164)
        if case is None:
            case = open_cases[warning.phone.e164] = NewCase(source, warning, now)
            new_cases.append(case)
            plan.append(_Step(Status.CREATED, -1, warning, case, "case.opened", opened_data(case)))
        else:
            changes = _merge_into(case, warning, now)
            merged: dict[str, Any] = {"external_id": warning.external_id, **changes}
            plan.append(_Step(Status.MERGED, -1, warning, case, "case.merged", merged))

    if new_cases:
        # One INSERT for every new case, in the order of their numbers: two requests opening
        # the same numbers at once then take the unique index's locks in the same order (in
        # the request's order, PostgreSQL could deadlock them). Ids come back in row order.
        ordered = sorted(new_cases, key=lambda case: case.phone)
        rows = [case.row() for case in ordered]
        if len(rows) == 1:
            ordered[0].id = conn.execute(_INSERT_CASE, rows[0]).scalar_one()
        else:
            # RETURNING in row order made SQLite insert one row per statement (a thousand
            # executes a batch). A plain executemany, then the ids by number: every new case's
            # open_key is its number, unique among open cases.
            _ADD_CASES.execute(conn, rows)
            by_number = {case.phone: case for case in ordered}
            for case_id, number in _NEW_CASE_IDS.execute(conn, list(by_number)):
                by_number[number].id = case_id

    known = _known_contacts(
        conn, [c.id for c in open_cases.values() if isinstance(c, Case)], warnings
    )
    warning_rows: list[dict[str, Any]] = []
    contact_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    results: list[Accepted] = []
    for step in plan:
        if step.warning is None or step.case is None:
            # A duplicate: of a stored warning (its case id), or of one earlier in this request.
            case_id = results[step.ref].case_id if step.earlier else step.ref
            results.append(Accepted(Status.DUPLICATE, case_id))
            continue
        warning, target = step.warning, step.case
        event_rows.append(event_row(target.id, step.kind, actor, step.data, at=now))
        warning_rows.append(warning_row(source, warning, target.id, now))
        phones_known = known.setdefault(target.id, set())
        for contact in warning.contacts:
            if contact.phone.e164 in phones_known or contact.phone.e164 == target.phone:
                continue
            phones_known.add(contact.phone.e164)
            contact_rows.append(
                {
                    "case_id": target.id,
                    "phone": contact.phone.e164,
                    "relation": contact.relation,
                    "name": contact.name,
                    "created_at": now,
                }
            )
        received = received_data(warning, step.status)
        event_rows.append(event_row(target.id, "warning.received", actor, received, at=now))
        results.append(Accepted(step.status, target.id))
    _ADD_WARNINGS.execute(conn, warning_rows)
    if contact_rows:
        conn.execute(_INSERT_CONTACTS, contact_rows)
    _ADD_EVENTS.execute(conn, event_rows)
    return results


def _look_up(
    conn: Connection, source: Caller, warnings: Sequence[WarningInput]
) -> tuple[dict[str, int], list[int]]:
    """The case ids of the warnings stored before (by external id), and the open cases' ids."""
    seen: dict[str, int] = {}
    open_ids: list[int] = []
    if len(warnings) == 1:
        # The common request: both look-ups in one statement, without expanding IN lists.
        only = warnings[0]
        params = {"source_id": source.id, "external_id": only.external_id, "key": only.phone.e164}
        row = conn.execute(_LOOK_UP_ONE, params).one()
        stored_id: int | None = row[0]
        open_id: int | None = row[1]
        if stored_id is not None:
            seen[only.external_id] = stored_id
        elif open_id is not None:
            open_ids.append(open_id)  # locked when read as a Case (_MergeSession.cases)
        return seen, open_ids
    external_ids = sorted({w.external_id for w in warnings})
    stored = _STORED_IDS.execute(conn, external_ids, {"source_id": source.id})
    seen.update((external_id, case_id) for external_id, case_id in stored)
    phones = sorted({w.phone.e164 for w in warnings if w.external_id not in seen})
    # FOR UPDATE: two warnings merging into one case at once must not lose a risk raise.
    open_ids.extend(case_id for (case_id,) in _OPEN_CASE_IDS.execute(conn, phones))
    return seen, open_ids


def _known_contacts(
    conn: Connection, case_ids: list[int], warnings: Sequence[WarningInput]
) -> dict[int, set[str]]:
    """Contact numbers the existing cases already have (only read if a warning brings some)."""
    known: dict[int, set[str]] = {}
    if not case_ids or not any(w.contacts for w in warnings):
        return known
    for case_id, number in _KNOWN_CONTACTS.execute(conn, case_ids):
        known.setdefault(case_id, set()).add(number)
    return known


def warning_row(
    source: Caller, warning: WarningInput, case_id: int, now: datetime
) -> dict[str, Any]:
    """The stored warning, as a row of the warnings table."""
    return {
        "source_id": source.id,
        "external_id": warning.external_id,
        "case_id": case_id,
        "payload": warning.raw,
        "received_at": now,
    }


def opened_data(case: Case | NewCase) -> dict[str, Any]:
    """The data of a ``case.opened`` event."""
    return {"phone": mask(case.phone), "risk": case.risk, "fraud_type": case.fraud_type}


def received_data(warning: WarningInput, status: Status) -> dict[str, Any]:
    """The data of a ``warning.received`` event."""
    return {
        "external_id": warning.external_id,
        "risk": warning.risk.value,
        "fraud_type": warning.fraud_type.value,
        "trigger": warning.trigger.value if warning.trigger else None,
        "result": status.value,
    }
