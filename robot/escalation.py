"""Run the policy for cases that are due a review and apply what it decides."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from robot import casework
from robot.config import Settings
from robot.db import is_postgres, read_session
from robot.models import (
    Attempt,
    AttemptState,
    Case,
    CaseState,
    Channel,
    Contact,
    Outcome,
    Purpose,
    Risk,
)
from robot.policy import (
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

log = logging.getLogger(__name__)
ROBOT = "robot"


def snapshot(session: Session, case: Case) -> tuple[CaseSnapshot, list[AttemptSnapshot]]:
    contacts = session.scalar(
        select(func.count()).select_from(Contact).where(Contact.case_id == case.id)
    )
    attempts = session.scalars(
        select(Attempt).where(Attempt.case_id == case.id).order_by(Attempt.id)
    ).all()
    case_view = CaseSnapshot(
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
        contact_count=int(contacts or 0),
        sms_blocked=case.sms_blocked,
        calls_blocked=case.calls_blocked,
    )
    attempt_views = [
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
        if a.purpose not in (Purpose.STAFF_SMS.value, Purpose.STAFF_BRIDGE.value)
    ]
    return case_view, attempt_views


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
    postgres = is_postgres(sessions.kw["bind"])
    with read_session(sessions) as session:
        ids = session.scalars(
            select(Case.id)
            .where(Case.next_review_at <= now)
            .order_by(Case.next_review_at)
            .limit(limit)
        ).all()
    reviewed = 0
    for case_id in ids:
        try:
            with sessions.begin() as session:
                query = select(Case).where(Case.id == case_id, Case.next_review_at <= now)
                # Another worker reviewing the same case skips it instead of waiting.
                query = query.with_for_update(skip_locked=True) if postgres else query
                case = session.scalar(query)
                if case is None:
                    continue
                review_case(session, case, settings, now)
                reviewed += 1
        except Exception:
            # One broken case must not hold up every other case and all dispatching: it is
            # logged and looked at again a minute later.
            log.exception("review of case %s failed", case_id)
            with sessions.begin() as session:
                retry_at = now + timedelta(minutes=1)
                session.execute(
                    update(Case).where(Case.id == case_id).values(next_review_at=retry_at)
                )
    return reviewed
