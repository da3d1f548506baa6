"""What can happen to a case, for the robot, the worker and the staff alike.

Every function writes the change, its timeline event and, where the source cares, its feedback
message, all in the caller's transaction. None of them talks to the provider: the worker does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from robot import feedback
from robot.models import (
    Attempt,
    AttemptState,
    Case,
    CaseState,
    Channel,
    Contact,
    Disposition,
    HomeVisit,
    Purpose,
)
from robot.phones import mask
from robot.timeline import record

#: Attempts the robot makes to the person; a confirmation cancels the ones not yet placed.
ROBOT_PURPOSES = (Purpose.WARNING.value, Purpose.RETRY.value)


def touch(case: Case, now: datetime, *, review: bool = True) -> None:
    case.updated_at = now
    case.version += 1
    if review:
        case.next_review_at = now


def cancel_robot_attempts(
    session: Session, case: Case, reason: str, actor: str, now: datetime
) -> int:
    result = session.execute(
        update(Attempt)
        .where(
            Attempt.case_id == case.id,
            Attempt.state == AttemptState.SCHEDULED.value,
            Attempt.purpose.in_(ROBOT_PURPOSES),
        )
        .values(state=AttemptState.CANCELED.value, finished_at=now, error_message=reason)
    )
    canceled = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if canceled:
        record(
            session,
            case.id,
            "attempts.canceled",
            actor,
            {"count": canceled, "reason": reason},
            at=now,
        )
    return canceled


def confirm(session: Session, case: Case, actor: str, channel: str, now: datetime) -> None:
    """The person confirmed the warning (key 1, an SMS reply): the robot stops on every channel."""
    if case.confirmed_at is not None:
        return
    case.confirmed_at = now
    touch(case, now)
    record(session, case.id, "case.confirmed", actor, {"channel": channel}, at=now)
    cancel_robot_attempts(session, case, "confirmed", actor, now)
    feedback.enqueue(session, case, "case.reached", {"channel": channel}, now)


def escalate(
    session: Session, case: Case, reason: str, actor: str, now: datetime, *, critical: bool = False
) -> None:
    """Put the case in the human queue (critical cases at its head)."""
    newly_critical = critical and not case.critical
    if case.state == CaseState.ESCALATED.value and not newly_critical:
        return
    if case.state == CaseState.CLOSED.value:
        reopen(session, case, reason, actor, now)
    case.critical = case.critical or critical
    if case.state != CaseState.ESCALATED.value:
        case.state = CaseState.ESCALATED.value
        case.escalated_at = now
    touch(case, now)
    record(
        session,
        case.id,
        "case.escalated",
        actor,
        {"reason": reason, "critical": case.critical},
        at=now,
    )
    feedback.enqueue(session, case, "case.escalated", {"reason": reason}, now)


def reopen(session: Session, case: Case, reason: str, actor: str, now: datetime) -> None:
    """A closed case comes back (e.g. a follow-up hears "someone asked me for money again")."""
    if case.state != CaseState.CLOSED.value:
        return
    other_open = session.scalar(select(Case.id).where(Case.open_key == case.phone))
    case.state = CaseState.OPEN.value
    case.open_key = None if other_open else case.phone
    case.closed_at = None
    case.disposition = None
    case.confirmed_at = None
    touch(case, now)
    record(session, case.id, "case.reopened", actor, {"reason": reason}, at=now)


def close(
    session: Session,
    case: Case,
    disposition: Disposition,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> None:
    if case.state == CaseState.CLOSED.value:
        return
    case.state = CaseState.CLOSED.value
    case.open_key = None
    case.closed_at = now
    case.disposition = disposition.value
    case.disposition_note = note
    case.assignee_id = None
    case.claim_expires_at = None
    touch(case, now)  # the policy schedules the follow-ups
    cancel_robot_attempts(session, case, f"closed: {disposition.value}", actor, now)
    record(
        session,
        case.id,
        "case.closed",
        actor,
        {"disposition": disposition.value, "note": note},
        at=now,
    )
    feedback.enqueue(session, case, "case.closed", {"note": note}, now)


def request_home_visit(
    session: Session, case: Case, reason: str, actor: str, now: datetime
) -> HomeVisit:
    """Ask police to visit: what the officer needs to find the person and what was tried."""
    tried = session.execute(
        select(Attempt.channel, Attempt.purpose, Attempt.outcome, Attempt.finished_at)
        .where(Attempt.case_id == case.id, Attempt.state == AttemptState.FINISHED.value)
        .order_by(Attempt.finished_at)
    ).all()
    summary: dict[str, Any] = {
        "reason": reason,
        "risk": case.risk,
        "fraud_type": case.fraud_type,
        "trigger": case.trigger,
        "opened_at": case.opened_at.isoformat(),
        "tried": [
            {"channel": c, "purpose": p, "outcome": o, "at": f.isoformat() if f else None}
            for c, p, o, f in tried
        ],
    }
    visit = HomeVisit(
        case_id=case.id,
        requested_at=now,
        requested_by=actor,
        area=case.area,
        address=case.address,
        summary=summary,
    )
    session.add(visit)
    case.home_visit_requested_at = now
    touch(case, now)
    record(
        session,
        case.id,
        "home_visit.requested",
        actor,
        {"reason": reason, "area": case.area},
        at=now,
    )
    # The visit request goes out through the same signed outbox: the source's platform
    # dispatches the officer. The address is included because the officer needs it.
    feedback.enqueue(
        session,
        case,
        "case.home_visit_requested",
        {"area": case.area, "summary": summary},
        now,
        private={"address": case.address, "name": case.name, "phone": case.phone},
    )
    record(
        session,
        case.id,
        "disclosure",
        actor,
        {"to": f"source:{case.source_id} (home visit)", "fields": ["name", "phone", "address"]},
        at=now,
    )
    return visit


def notify_contacts(
    session: Session,
    case: Case,
    reason: str,
    actor: str,
    now: datetime,
    *,
    due_at: datetime | None = None,
) -> int:
    """Text and call each contact with the relatives notice: the least that helps, no fraud details."""
    contacts = session.scalars(
        select(Contact).where(Contact.case_id == case.id).order_by(Contact.id)
    ).all()
    if not contacts:
        return 0
    for contact in contacts:
        for channel in (Channel.SMS, Channel.CALL):
            session.add(
                Attempt(
                    case_id=case.id,
                    contact_id=contact.id,
                    channel=channel.value,
                    purpose=Purpose.CONTACT_NOTICE.value,
                    to_phone=contact.phone,
                    template="relatives_notice",
                    due_at=due_at or now,
                    created_at=now,
                )
            )
        # Each disclosure to a third party is an event on the case.
        record(
            session,
            case.id,
            "disclosure",
            actor,
            {
                "to": f"contact:{contact.id}",
                "relation": contact.relation,
                "phone": mask(contact.phone),
                "what": "relatives_notice",
            },
            at=now,
        )
    case.contacts_notified_at = now
    touch(case, now)
    record(
        session,
        case.id,
        "contacts.notified",
        actor,
        {"count": len(contacts), "reason": reason},
        at=now,
    )
    return len(contacts)


def schedule_attempt(
    session: Session,
    case: Case,
    *,
    channel: str,
    purpose: str,
    template: str,
    due_at: datetime,
    actor: str,
    now: datetime,
    reason: str = "",
    staff_id: int | None = None,
    to_phone: str | None = None,
) -> Attempt:
    """Schedule one SMS or call, to the person unless ``to_phone`` says otherwise."""
    attempt = Attempt(
        case_id=case.id,
        channel=channel,
        purpose=purpose,
        to_phone=to_phone or case.phone,
        template=template,
        due_at=due_at,
        staff_id=staff_id,
        created_at=now,
    )
    session.add(attempt)
    session.flush()
    data = scheduled_event_data(channel, purpose, template, due_at, reason)
    record(session, case.id, "attempt.scheduled", actor, data, attempt_id=attempt.id, at=now)
    return attempt


def scheduled_event_data(
    channel: str, purpose: str, template: str, due_at: datetime, reason: str
) -> dict[str, Any]:
    """The ``attempt.scheduled`` event's data (also written without the ORM by the worker)."""
    return {
        "channel": channel,
        "purpose": purpose,
        "template": template,
        "due_at": due_at.isoformat(),
        "reason": reason,
    }


def record_disposition(
    session: Session,
    case: Case,
    disposition: Disposition,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> None:
    """Staff recorded what happened on a case that stays open (e.g. still believes the fraudster).

    The case keeps its state; the policy sees the disposition (a case that still believes is put
    back in the human queue) and the source hears about it like any other outcome.
    """
    case.disposition = disposition.value
    case.disposition_note = note
    touch(case, now)
    record(
        session,
        case.id,
        "case.disposition",
        actor,
        {"disposition": disposition.value, "note": note},
        at=now,
    )
    feedback.enqueue(session, case, "case.disposition", {"note": note}, now)
