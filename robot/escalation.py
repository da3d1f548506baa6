"""Run the policy for cases that are due a review and apply what it decides."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from robot import casework, feedback
from robot.config import Settings
from robot.db import is_postgres, read_only_options
from robot.models import (
    Attempt,
    AttemptState,
    Case,
    CaseState,
    Channel,
    Contact,
    Event,
    Outcome,
    Purpose,
    Risk,
)
from robot.policy import (
    Action,
    AttemptSnapshot,
    CancelRobotAttempts,
    CaseSnapshot,
    Close,
    Decision,
    Escalate,
    NotifyContacts,
    RequestHomeVisit,
    ScheduleAttempt,
    decide,
)
from robot.timeline import event_row

log = logging.getLogger(__name__)
ROBOT = "robot"
#: Staff attempts are not the policy's business.
_STAFF_PURPOSES = (Purpose.STAFF_SMS.value, Purpose.STAFF_BRIDGE.value)

# The review of a due case, as statements built once. A review that changes nothing but the
# next review time (most of them: the one after each callback) never loads an ORM object; one
# cost ~2.5 ms of Python through the Session, several times the database work.
_CASES = cast(Table, Case.__table__)
_ATTEMPTS = cast(Table, Attempt.__table__)
_CONTACTS = cast(Table, Contact.__table__)
_EVENTS = cast(Table, Event.__table__)
_now = bindparam("now", type_=_CASES.c.next_review_at.type)

#: A case with no attempt yet is due its first review (a new case): it comes first, so that
#: its warnings are not queued behind the reviews after other cases' callbacks. The others
#: have a share of every pass of their own, so that a burst of new cases cannot hold back the
#: retries and escalations of the cases already worked.
_HAS_ATTEMPT = exists().where(_ATTEMPTS.c.case_id == _CASES.c.id)


def _due(reviewed_before: bool, limit: str) -> Any:
    return (
        select(_CASES.c.id, literal(reviewed_before).label("reviewed_before"))
        .where(_CASES.c.next_review_at <= _now, _HAS_ATTEMPT if reviewed_before else ~_HAS_ATTEMPT)
        .order_by(_CASES.c.next_review_at)
        .limit(bindparam(limit))
        .subquery()
    )


_NEW_DUE, _OTHERS_DUE = _due(False, "limit"), _due(True, "others_limit")
_DUE_CASES = union_all(select(_NEW_DUE), select(_OTHERS_DUE))
_CONTACT_COUNT = (
    select(func.count())
    .select_from(_CONTACTS)
    .where(_CONTACTS.c.case_id == _CASES.c.id)
    .scalar_subquery()
)
#: What the policy reads of a case and of its attempts (see _case_view and _attempt_views).
_CASE_FIELDS = (
    "id", "risk", "state", "critical", "opened_at", "confirmed_at", "escalated_at",
    "contacts_notified_at", "home_visit_requested_at", "closed_at", "disposition", "timezone",
    "sms_blocked", "calls_blocked", "phone", "source_id",
)  # fmt: skip
_ATTEMPT_FIELDS = (
    "id", "channel", "purpose", "state", "outcome", "due_at", "placed_at", "finished_at",
    "contact_id", "digits",
)  # fmt: skip
#: The case if it is (still) due.
_READ_CASE = select(
    *(_CASES.c[name] for name in _CASE_FIELDS), _CONTACT_COUNT.label("contact_count")
).where(_CASES.c.id == bindparam("case_id"), _CASES.c.next_review_at <= _now)
# Another worker reviewing the same case skips it instead of waiting.
_READ_CASE_LOCKED = _READ_CASE.with_for_update(of=_CASES, skip_locked=True)
_READ_ATTEMPTS = (
    select(*(_ATTEMPTS.c[name] for name in _ATTEMPT_FIELDS))
    .where(_ATTEMPTS.c.case_id == bindparam("case_id"))
    .order_by(_ATTEMPTS.c.id)
)
_INSERT_ATTEMPT = insert(_ATTEMPTS)
#: Several at once, their ids returned in the order of the rows.
_INSERT_ATTEMPTS = insert(_ATTEMPTS).returning(_ATTEMPTS.c.id, sort_by_parameter_order=True)
_INSERT_EVENT = insert(_EVENTS)
_SET_NEXT_REVIEW = (
    update(_CASES)
    .where(_CASES.c.id == bindparam("case_id"))
    .values(next_review_at=bindparam("next", type_=_CASES.c.next_review_at.type))
)
#: The case after casework.escalate (its touch included) and the review's next_review_at.
_SET_ESCALATED = (
    update(_CASES)
    .where(_CASES.c.id == bindparam("case_id"))
    .values(
        state=bindparam("state"),
        critical=bindparam("critical"),
        escalated_at=bindparam("escalated_at", type_=_CASES.c.escalated_at.type),
        updated_at=bindparam("updated_at", type_=_CASES.c.updated_at.type),
        version=_CASES.c.version + bindparam("touches"),
        next_review_at=bindparam("next", type_=_CASES.c.next_review_at.type),
    )
)


@dataclass(slots=True)
class _CaseChange:
    """The case as a Core review changes it (what feedback.outbox_rows reads, and more)."""

    id: int
    source_id: int
    state: str
    risk: str
    critical: bool
    disposition: str | None
    escalated_at: datetime | None
    touches: int = 0


def _case_view(case: Case | Row[Any], contact_count: int) -> CaseSnapshot:
    """The policy's view of a case (an ORM object or a row with the same names)."""
    return CaseSnapshot(
        id=case.id,
        risk=Risk(case.risk),
        state=CaseState(case.state),
        critical=case.critical,
        opened_at=case.opened_at,
        confirmed_at=case.confirmed_at,
        escalated_at=case.escalated_at,
        contacts_notified_at=case.contacts_notified_at,
        home_visit_requested_at=case.home_visit_requested_at,
        closed_at=case.closed_at,
        disposition=case.disposition,
        timezone=case.timezone,
        contact_count=contact_count,
        sms_blocked=case.sms_blocked,
        calls_blocked=case.calls_blocked,
    )


def _attempt_views(attempts: Iterable[Attempt | Row[Any]]) -> list[AttemptSnapshot]:
    """The policy's view of a case's attempts, in id order (ORM objects or rows)."""
    return [
        AttemptSnapshot(
            id=a.id,
            channel=Channel(a.channel),
            purpose=Purpose(a.purpose),
            state=AttemptState(a.state),
            outcome=Outcome(a.outcome) if a.outcome else None,
            due_at=a.due_at,
            placed_at=a.placed_at,
            finished_at=a.finished_at,
            to_contact=a.contact_id is not None,
            digits=a.digits,
        )
        for a in attempts
        if a.purpose not in _STAFF_PURPOSES
    ]


def snapshot(session: Session, case: Case) -> tuple[CaseSnapshot, list[AttemptSnapshot]]:
    contacts = session.scalar(
        select(func.count()).select_from(Contact).where(Contact.case_id == case.id)
    )
    attempts = session.scalars(
        select(Attempt).where(Attempt.case_id == case.id).order_by(Attempt.id)
    ).all()
    return _case_view(case, int(contacts or 0)), _attempt_views(attempts)


def apply(session: Session, case: Case, decision: Decision, now: datetime) -> None:
    """Carry out the policy's actions in order, each leaving its event on the timeline."""
    for action in decision.actions:
        if isinstance(action, ScheduleAttempt):
            if action.to_contacts:
                continue  # NotifyContacts writes one attempt per contact and channel
            casework.schedule_attempt(
                session,
                case,
                channel=action.channel.value,
                purpose=action.purpose.value,
                template=action.template.value,
                due_at=action.due_at,
                actor=ROBOT,
                now=now,
                reason=action.reason,
            )
        elif isinstance(action, CancelRobotAttempts):
            casework.cancel_robot_attempts(session, case, action.reason, ROBOT, now)
        elif isinstance(action, Escalate):
            casework.escalate(session, case, action.reason, ROBOT, now, critical=action.critical)
        elif isinstance(action, NotifyContacts):
            due = _contact_due(decision, now)
            casework.notify_contacts(session, case, action.reason, ROBOT, now, due_at=due)
        elif isinstance(action, RequestHomeVisit):
            casework.request_home_visit(session, case, action.reason, ROBOT, now)
        elif isinstance(action, Close):
            casework.close(session, case, action.disposition, ROBOT, now, note=action.reason)
    case.next_review_at = decision.next_review_at


def _schedule_attempts(
    conn: Connection, case_id: int, phone: str, actions: list[ScheduleAttempt], now: datetime
) -> None:
    """casework.schedule_attempt for the robot, for each action, as Core statements: the same
    rows (the model's column defaults apply to both) and the same events, in the same order.
    A new case's SMS and call go in one INSERT, and their events in another."""
    if not actions:
        return
    rows = [
        {
            "case_id": case_id,
            "channel": action.channel.value,
            "purpose": action.purpose.value,
            "to_phone": phone,
            "template": action.template.value,
            "due_at": action.due_at,
            "staff_id": None,
            "created_at": now,
        }
        for action in actions
    ]
    if len(rows) == 1:
        key = conn.execute(_INSERT_ATTEMPT, rows[0]).inserted_primary_key
        assert key is not None
        ids = [key[0]]
    else:
        ids = list(conn.execute(_INSERT_ATTEMPTS, rows).scalars())
    events = [
        event_row(
            case_id,
            "attempt.scheduled",
            ROBOT,
            casework.scheduled_event_data(
                action.channel.value,
                action.purpose.value,
                action.template.value,
                action.due_at,
                action.reason,
            ),
            attempt_id=attempt_id,
            at=now,
        )
        for action, attempt_id in zip(actions, ids, strict=True)
    ]
    conn.execute(_INSERT_EVENT, events)


def _contact_due(decision: Decision, now: datetime) -> datetime:
    dues = [a.due_at for a in decision.actions if isinstance(a, ScheduleAttempt) and a.to_contacts]
    return min(dues) if dues else now


def review_case(session: Session, case: Case, settings: Settings, now: datetime) -> Decision:
    case_view, attempt_views = snapshot(session, case)
    decision = decide(
        case_view, attempt_views, now, settings.policy, time_scale=settings.time_scale
    )
    apply(session, case, decision, now)
    return decision


def review_due(
    sessions: sessionmaker[Session], settings: Settings, now: datetime, limit: int = 100
) -> int:
    """Review every case whose next_review_at has come; one transaction per case."""
    first, others = due_cases(sessions, now, limit)
    return review_cases(sessions, settings, [*first, *others], now)


def due_cases(
    sessions: sessionmaker[Session], now: datetime, limit: int = 100
) -> tuple[list[int], list[int]]:
    """The cases due a review: (new cases, due their first review; the others), oldest first."""
    engine = sessions.kw["bind"]
    with engine.connect() as conn:
        conn.execution_options(**read_only_options(engine))
        return read_due_cases(conn, now, limit)


def read_due_cases(
    conn: Connection, now: datetime, limit: int = 100
) -> tuple[list[int], list[int]]:
    """:func:`due_cases` on the caller's connection (the worker reads more in the same one)."""
    rows = conn.execute(
        _DUE_CASES, {"now": now, "limit": limit, "others_limit": max(1, limit // 2)}
    ).all()
    first = [row.id for row in rows if not row.reviewed_before]
    return first, [row.id for row in rows if row.reviewed_before]


def review_cases(
    sessions: sessionmaker[Session], settings: Settings, ids: Iterable[int], now: datetime
) -> int:
    """Review these cases if they are (still) due; one transaction per case."""
    engine: Engine = sessions.kw["bind"]
    postgres = is_postgres(engine)
    reviewed = 0
    for case_id in ids:
        try:
            # A bare connection: a Session's own bookkeeping cost ~0.1 ms a review, and most
            # reviews never need it (an ORM one joins this transaction).
            with engine.begin() as conn:
                if _review_due_case(conn, case_id, settings, now, postgres):
                    reviewed += 1
        except Exception:
            # One broken case must not hold up every other case and all dispatching: it is
            # logged and looked at again a minute later.
            log.exception("review of case %s failed", case_id)
            with engine.begin() as conn:
                retry_at = now + timedelta(minutes=1)
                conn.execute(_SET_NEXT_REVIEW, {"case_id": case_id, "next": retry_at})
    return reviewed


def _review_due_case(
    conn: Connection, case_id: int, settings: Settings, now: datetime, postgres: bool
) -> bool:
    """:func:`review_case` for one case if it is still due: False if it is not (or is locked)."""
    row = conn.execute(
        _READ_CASE_LOCKED if postgres else _READ_CASE, {"case_id": case_id, "now": now}
    ).first()
    if row is None:
        return False
    attempts = conn.execute(_READ_ATTEMPTS, {"case_id": case_id})
    decision = decide(
        _case_view(row, int(row.contact_count or 0)),
        _attempt_views(attempts),
        now,
        settings.policy,
        time_scale=settings.time_scale,
    )
    if _core_applies(decision.actions, row):
        _apply_core(conn, row, decision, now)
        return True
    # Other actions go through casework on the ORM case, in this transaction (the row is
    # already ours: locked on PostgreSQL, SQLite's write lock held).
    with Session(bind=conn) as session:
        case = session.get(Case, case_id)
        assert case is not None
        apply(session, case, decision, now)
        session.flush()
    return True


def _core_applies(actions: Sequence[Action], case: Row[Any]) -> bool:
    """Whether :func:`_apply_core` can carry out these actions: attempts to the person and
    escalations of a case that is not closed (reopening one stays with the ORM) — the reviews
    of a new case, after most callbacks (none at all) and after a busy line."""
    for action in actions:
        if isinstance(action, ScheduleAttempt):
            if action.to_contacts:
                return False
        elif not isinstance(action, Escalate) or case.state == CaseState.CLOSED.value:
            return False
    return True


def _apply_core(conn: Connection, row: Row[Any], decision: Decision, now: datetime) -> None:
    """:func:`apply` for the actions :func:`_core_applies` accepts, without the ORM: the same
    rows and events, in the same order."""
    case = _CaseChange(
        row.id, row.source_id, row.state, row.risk, row.critical, row.disposition, row.escalated_at
    )
    scheduled: list[ScheduleAttempt] = []
    for action in decision.actions:
        if isinstance(action, ScheduleAttempt):
            scheduled.append(action)
        elif isinstance(action, Escalate):
            _schedule_attempts(conn, case.id, row.phone, scheduled, now)
            scheduled = []
            _escalate(conn, case, action, now)
    _schedule_attempts(conn, case.id, row.phone, scheduled, now)
    if not case.touches:
        conn.execute(_SET_NEXT_REVIEW, {"case_id": case.id, "next": decision.next_review_at})
        return
    conn.execute(
        _SET_ESCALATED,
        {
            "case_id": case.id,
            "state": case.state,
            "critical": case.critical,
            "escalated_at": case.escalated_at,
            "updated_at": now,
            "touches": case.touches,
            "next": decision.next_review_at,
        },
    )


def _escalate(conn: Connection, case: _CaseChange, action: Escalate, now: datetime) -> None:
    """casework.escalate of a case that is not closed, on ``case`` and the connection (the
    case's row itself is written once, at the end of the review)."""
    newly_critical = action.critical and not case.critical
    if case.state == CaseState.ESCALATED.value and not newly_critical:
        return
    case.critical = case.critical or action.critical
    if case.state != CaseState.ESCALATED.value:
        case.state = CaseState.ESCALATED.value
        case.escalated_at = now
    case.touches += 1  # casework.touch: updated_at, version (its next_review_at is overwritten)
    data = {"reason": action.reason, "critical": case.critical}
    conn.execute(_INSERT_EVENT, [event_row(case.id, "case.escalated", ROBOT, data, at=now)])
    feedback.enqueue_core(conn, case, "case.escalated", {"reason": action.reason}, now)
