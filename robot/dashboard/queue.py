"""The queue: escalated cases, most urgent first, with waits and deadlines; callbacks due.

The page is rendered on the server and then refreshes itself from ``queue.json``. Numbers are
always masked here; the full number is only ever shown on a case page, by a recorded reveal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, render_template, request, url_for
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from robot.app import services
from robot.config import DashboardSettings
from robot.dashboard import claims, i18n
from robot.dashboard.identity import CurrentStaff
from robot.dashboard.web import bp, duration, local, me, until
from robot.models import Attempt, Callback, Case, CaseState, Purpose, Staff, utcnow
from robot.phones import mask

STATES: tuple[str, ...] = (
    CaseState.ESCALATED.value,
    CaseState.OPEN.value,
    CaseState.CLOSED.value,
)
CLAIM_FILTERS: tuple[str, ...] = ("any", "mine", "unclaimed")
#: Callbacks show up in the queue this long before they are due.
CALLBACK_LOOKAHEAD = timedelta(minutes=30)


@dataclass(frozen=True)
class Filters:
    area: str | None = None
    state: str = CaseState.ESCALATED.value
    claim: str = "any"

    @classmethod
    def from_request(cls, staff: CurrentStaff) -> Filters:
        state = request.args.get("state", CaseState.ESCALATED.value)
        claim = request.args.get("claim", "any")
        area = (request.args.get("area") or "").strip() or None
        return cls(
            # An operator tied to an area cannot look outside it, whatever the URL says.
            area=area if staff.sees_all_areas else staff.area,
            state=state if state in STATES else CaseState.ESCALATED.value,
            claim=claim if claim in CLAIM_FILTERS else "any",
        )

    def query_args(self) -> dict[str, str]:
        args = {"state": self.state, "claim": self.claim}
        if self.area:
            args["area"] = self.area
        return args


def queue_rows(
    session: Session,
    staff: CurrentStaff,
    filters: Filters,
    now: datetime,
    settings: DashboardSettings,
) -> list[dict[str, Any]]:
    """The queue as JSON-ready rows (numbers masked), most urgent first."""
    query = (
        select(Case, Staff.display_name)
        .outerjoin(Staff, Staff.id == Case.assignee_id)
        .where(Case.state == filters.state, *claims.scope(staff))
    )
    if filters.area:
        query = query.where(Case.area == filters.area)
    live = Case.claim_expires_at > now
    if filters.claim == "mine":
        query = query.where(Case.assignee_id == staff.id, live)
    elif filters.claim == "unclaimed":
        query = query.where(or_(Case.assignee_id.is_(None), Case.claim_expires_at.is_(None), ~live))
    if filters.state == CaseState.CLOSED.value:
        query = query.order_by(Case.closed_at.desc(), Case.id.desc())
    else:
        query = query.order_by(*claims.urgency_order())
    rows = session.execute(query.limit(settings.queue_limit)).all()
    last = _last_attempts(session, [case_.id for case_, _ in rows])
    return [_row(case_, holder, staff, now, settings, last.get(case_.id)) for case_, holder in rows]


def _last_attempts(session: Session, case_ids: list[int]) -> dict[int, tuple[str, str]]:
    """(channel, outcome or state) of the latest attempt to the person, per case."""
    if not case_ids:
        return {}
    found: dict[int, tuple[str, str]] = {}
    attempts = session.execute(
        select(Attempt.case_id, Attempt.channel, Attempt.outcome, Attempt.state)
        .where(
            Attempt.case_id.in_(case_ids),
            Attempt.contact_id.is_(None),
            Attempt.purpose != Purpose.STAFF_BRIDGE.value,
        )
        .order_by(Attempt.id.desc())
    ).all()
    for case_id, channel, outcome, state in attempts:
        found.setdefault(case_id, (channel, outcome or state))
    return found


def _row(
    case_: Case,
    holder: str | None,
    staff: CurrentStaff,
    now: datetime,
    settings: DashboardSettings,
    last: tuple[str, str] | None,
) -> dict[str, Any]:
    lang = staff.language
    urgency = claims.urgency(case_)
    deadline = claims.respond_by(case_, settings)
    claimed = claims.claim_is_live(case_, now)
    waited_from = case_.escalated_at or case_.opened_at
    last_text = ""
    if last is not None:
        channel, result = last
        group = "outcome" if result in _OUTCOMES else "attempt_state"
        last_text = f"{i18n.label(lang, 'channel', channel)}: {i18n.label(lang, group, result)}"
    return {
        "id": case_.id,
        "url": url_for("dashboard.case_page", case_id=case_.id),
        "claim_url": url_for("dashboard.claim_case", case_id=case_.id),
        "phone": mask(case_.phone),
        "drill": case_.drill,
        "critical": case_.critical,
        "urgency": urgency,
        "urgency_label": i18n.label(lang, "urgency", urgency),
        "risk": case_.risk,
        "fraud_type": case_.fraud_type,
        "fraud_type_label": i18n.label(lang, "fraud", case_.fraud_type),
        "trigger_label": i18n.label(lang, "trigger", case_.trigger),
        "state": case_.state,
        "state_label": i18n.label(lang, "state", case_.state),
        "area": case_.area or "",
        "disposition_label": i18n.label(lang, "disposition", case_.disposition),
        "escalated_at": case_.escalated_at.isoformat() if case_.escalated_at else None,
        "waited_seconds": int((now - waited_from).total_seconds()),
        "waited_text": duration((now - waited_from).total_seconds()),
        "deadline": deadline.isoformat() if deadline else None,
        "deadline_seconds": int((deadline - now).total_seconds()) if deadline else None,
        "deadline_text": until(deadline, now) if deadline else "",
        "overdue": deadline is not None and deadline <= now,
        "claimed_by": holder if claimed else None,
        "claim_mine": claimed and case_.assignee_id == staff.id,
        "claim_until": case_.claim_expires_at.isoformat()
        if claimed and case_.claim_expires_at
        else None,
        "last_attempt": last_text,
    }


_OUTCOMES = frozenset(
    {
        "confirmed",
        "answered",
        "hung_up",
        "no_answer",
        "busy",
        "voicemail",
        "failed",
        "delivered",
        "undelivered",
    }
)


def callbacks_due(
    session: Session, staff: CurrentStaff, now: datetime, limit: int = 50
) -> list[dict[str, Any]]:
    """Open callbacks for me or for anyone, due now or soon, on cases I may see."""
    owner = aliased(Staff)
    query = (
        select(Callback, Case.phone, Case.drill, owner.display_name)
        .join(Case, Case.id == Callback.case_id)
        .outerjoin(owner, owner.id == Callback.owner_id)
        .where(
            Callback.done_at.is_(None),
            Callback.due_at <= now + CALLBACK_LOOKAHEAD,
            or_(Callback.owner_id.is_(None), Callback.owner_id == staff.id),
            *claims.scope(staff),
        )
        .order_by(Callback.due_at)
    )
    return [
        {
            "id": cb.id,
            "case_id": cb.case_id,
            "url": url_for("dashboard.case_page", case_id=cb.case_id),
            "phone": mask(phone),
            "drill": drill,
            "due_at": cb.due_at.isoformat(),
            "due_local": local(cb.due_at, "%m-%d %H:%M"),
            "overdue": cb.due_at <= now,
            "owner": owner_name,
            "mine": cb.owner_id == staff.id,
            "note": cb.note or "",
        }
        for cb, phone, drill, owner_name in session.execute(query.limit(limit)).all()
    ]


def areas(session: Session) -> list[str]:
    """Areas with cases that are not closed (for the supervisor's filter)."""
    rows = session.scalars(
        select(Case.area)
        .where(Case.area.is_not(None), Case.state != CaseState.CLOSED.value)
        .distinct()
        .order_by(Case.area)
    ).all()
    return [a for a in rows if a]


def snapshot(staff: CurrentStaff, filters: Filters) -> dict[str, Any]:
    svc = services()
    now = utcnow()
    with svc.sessions() as session:
        rows = queue_rows(session, staff, filters, now, svc.settings.dashboard)
        callbacks = callbacks_due(session, staff, now)
    return {
        "now": now.isoformat(),
        "now_local": local(now, "%H:%M:%S"),
        "filters": filters.query_args(),
        "count": len(rows),
        "rows": rows,
        "callbacks": callbacks,
    }


# --- views --------------------------------------------------------------------------------------


@bp.get("/")
def queue() -> str:
    staff = me()
    filters = Filters.from_request(staff)
    data = snapshot(staff, filters)
    with services().sessions() as session:
        area_choices = areas(session) if staff.sees_all_areas else []
    return render_template(
        "dashboard/queue.html",
        data=data,
        filters=filters,
        states=STATES,
        claim_filters=CLAIM_FILTERS,
        area_choices=area_choices,
        poll_ms=int(services().settings.dashboard.poll_seconds * 1000),
        strings=i18n.script_strings(staff.language),
        json_url=f"{url_for('dashboard.queue_json')}?{urlencode(filters.query_args())}",
    )


@bp.get("/queue.json")
def queue_json() -> Response:
    staff = me()
    return jsonify(snapshot(staff, Filters.from_request(staff)))
