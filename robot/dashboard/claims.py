"""Who works a case: exclusive claims that expire, releases, reassignment; urgency and SLA.

A claim is one conditional UPDATE: it succeeds only if the case is unclaimed, its claim has run
out, or it is already mine. On SQLite the writer lock (BEGIN IMMEDIATE) serialises two claims;
on PostgreSQL the second UPDATE waits for the first's row lock and re-checks the condition. Either
way exactly one of two racing operators wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from robot.config import DashboardSettings
from robot.dashboard.identity import CurrentStaff
from robot.models import Case, CaseState, Risk, Role, Staff
from robot.timeline import record

#: Most urgent first.
URGENCIES: tuple[str, ...] = ("critical", Risk.HIGH.value, Risk.MEDIUM.value, Risk.LOW.value)


def urgency(case_: Case) -> str:
    return "critical" if case_.critical else case_.risk


def sla(settings: DashboardSettings, urgency_: str) -> timedelta:
    minutes = {
        "critical": settings.sla_critical_minutes,
        Risk.HIGH.value: settings.sla_high_minutes,
        Risk.MEDIUM.value: settings.sla_medium_minutes,
    }.get(urgency_, settings.sla_low_minutes)
    return timedelta(minutes=minutes)


def respond_by(case_: Case, settings: DashboardSettings) -> datetime | None:
    """The response deadline: escalated_at plus the SLA of the case's urgency."""
    if case_.escalated_at is None or case_.state == CaseState.CLOSED.value:
        return None
    return case_.escalated_at + sla(settings, urgency(case_))


def urgency_order() -> list[ColumnElement[Any]]:
    """ORDER BY: critical first, then risk, then the longest wait."""
    risk_rank = case(
        (Case.risk == Risk.HIGH.value, 0), (Case.risk == Risk.MEDIUM.value, 1), else_=2
    )
    return [
        Case.critical.desc(),
        risk_rank,
        Case.escalated_at.asc().nulls_last(),
        Case.opened_at.asc(),
        Case.id.asc(),
    ]


def area_filter(staff: CurrentStaff) -> ColumnElement[bool] | None:
    """Operators with an area see only that area's cases; everyone else sees all."""
    if staff.sees_all_areas:
        return None
    return Case.area == staff.area


def scope(staff: CurrentStaff) -> list[ColumnElement[bool]]:
    """WHERE conditions limiting a query on cases to what ``staff`` may see."""
    condition = area_filter(staff)
    return [] if condition is None else [condition]


def claim_is_live(case_: Case, now: datetime) -> bool:
    return (
        case_.assignee_id is not None
        and case_.claim_expires_at is not None
        and case_.claim_expires_at > now
    )


# --- claiming -----------------------------------------------------------------------------------


class ClaimStatus(StrEnum):
    WON = "won"  #: newly mine
    KEPT = "kept"  #: it was mine; the claim was refreshed
    TAKEN = "taken"  #: someone else holds a live claim
    CLOSED = "closed"
    MISSING = "missing"  #: no such case, or outside my area


@dataclass(frozen=True)
class ClaimResult:
    status: ClaimStatus
    holder: str | None = None  #: display name of whoever holds it when TAKEN
    until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status in (ClaimStatus.WON, ClaimStatus.KEPT)


def claim(
    session: Session, case_id: int, staff: CurrentStaff, now: datetime, span: timedelta
) -> ClaimResult:
    """Take or refresh the claim on a case, in the caller's transaction."""
    before = session.execute(
        select(Case.assignee_id, Case.claim_expires_at, Case.state).where(
            Case.id == case_id, *scope(staff)
        )
    ).first()
    if before is None:
        return ClaimResult(ClaimStatus.MISSING)
    until = now + span
    free = or_(
        Case.assignee_id.is_(None),
        Case.claim_expires_at.is_(None),
        Case.claim_expires_at <= now,
        Case.assignee_id == staff.id,
    )
    condition = and_(Case.id == case_id, Case.state != CaseState.CLOSED.value, free)
    area = area_filter(staff)
    if area is not None:
        condition = and_(condition, area)
    done = session.execute(
        update(Case)
        .where(condition)
        .values(assignee_id=staff.id, claim_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    if int(done.rowcount or 0) != 1:  # type: ignore[attr-defined]
        return _why_not(session, case_id, now)
    session.expire_all()  # loaded Case objects must see the new claim
    held = (
        before.assignee_id == staff.id
        and before.claim_expires_at is not None
        and before.claim_expires_at > now
    )
    if held:
        return ClaimResult(ClaimStatus.KEPT, until=until)
    previous = _username(session, before.assignee_id) if before.assignee_id else None
    record(
        session,
        case_id,
        "case.claimed",
        staff.actor,
        {"until": until.isoformat(), "previous": previous},
        at=now,
    )
    return ClaimResult(ClaimStatus.WON, until=until)


def _why_not(session: Session, case_id: int, now: datetime) -> ClaimResult:
    row = session.execute(
        select(Case.state, Case.claim_expires_at, Staff.display_name)
        .outerjoin(Staff, Staff.id == Case.assignee_id)
        .where(Case.id == case_id)
    ).first()
    if row is None:
        return ClaimResult(ClaimStatus.MISSING)
    if row.state == CaseState.CLOSED.value:
        return ClaimResult(ClaimStatus.CLOSED)
    return ClaimResult(ClaimStatus.TAKEN, row.display_name, row.claim_expires_at)


def _username(session: Session, staff_id: int) -> str | None:
    return session.scalar(select(Staff.username).where(Staff.id == staff_id))


def release(session: Session, case_: Case, staff: CurrentStaff, now: datetime) -> bool:
    """Give my claim back to the queue; False if it was not mine."""
    if case_.assignee_id != staff.id:
        return False
    case_.assignee_id = None
    case_.claim_expires_at = None
    record(session, case_.id, "case.released", staff.actor, {}, at=now)
    return True


def reassign(
    session: Session,
    case_: Case,
    to: Staff | None,
    supervisor: CurrentStaff,
    now: datetime,
    span: timedelta,
) -> None:
    """A supervisor hands the case to someone (a fresh claim) or back to the queue (None)."""
    previous = _username(session, case_.assignee_id) if case_.assignee_id else None
    case_.assignee_id = to.id if to else None
    case_.claim_expires_at = now + span if to else None
    record(
        session,
        case_.id,
        "case.reassigned",
        supervisor.actor,
        {"from": previous, "to": to.username if to else None},
        at=now,
    )


def can_see(staff: Staff, case_: Case) -> bool:
    """Whether ``staff`` (a row, e.g. a reassignment target) may work ``case_``."""
    if staff.role != Role.OPERATOR.value or staff.area is None:
        return True
    return staff.area == case_.area
