"""Turn checked warnings into cases: idempotent per (source, external id), one open case per number.

Each warning is written inside a savepoint. If a concurrent request got there first (the unique
index on (source, external id), or on the open case's number, says so), the savepoint is rolled
back and the warning is read again: it becomes a duplicate of, or merges into, the winner's case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from robot.intake.validation import WarningInput
from robot.models import Case, CaseState, Contact, IncomingWarning, Risk
from robot.phones import mask
from robot.sources import Caller
from robot.timeline import record

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
    record(
        session,
        case.id,
        "warning.received",
        actor,
        {
            "external_id": warning.external_id,
            "risk": warning.risk.value,
            "fraud_type": warning.fraud_type.value,
            "trigger": warning.trigger.value if warning.trigger else None,
            "result": status.value,
        },
        at=now,
    )
    session.flush()
    return Accepted(status, case.id)


def _open_case(session: Session, source: Caller, warning: WarningInput, now: datetime) -> Case:
    case = Case(
        source_id=source.id,
        phone=warning.phone.e164,
        open_key=warning.phone.e164,
        region=warning.phone.region,
        timezone=warning.phone.timezone,
        name=warning.name,
        language=warning.language,
        area=warning.area,
        address=warning.address,
        risk=warning.risk.value,
        fraud_type=warning.fraud_type.value,
        trigger=warning.trigger.value if warning.trigger else None,
        state=CaseState.OPEN.value,
        critical=False,
        opened_at=now,
        updated_at=now,
        # The worker looks at the case at once: it schedules and places the first SMS and call.
        next_review_at=now,
        version=0,
    )
    session.add(case)
    session.flush()  # the unique open_key index fires here if another request won the race
    record(
        session,
        case.id,
        "case.opened",
        f"source:{source.name}",
        {"phone": mask(case.phone), "risk": case.risk, "fraud_type": case.fraud_type},
        at=now,
    )
    return case


def _merge(session: Session, case: Case, warning: WarningInput, now: datetime, actor: str) -> None:
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
    record(
        session,
        case.id,
        "case.merged",
        actor,
        {"external_id": warning.external_id, **changes},
        at=now,
    )


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
