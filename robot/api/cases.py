"""GET /api/v1/cases/<id>: state, attempts and timeline, for the sources that fed the case."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from robot.api.auth import authenticate
from robot.api.errors import ApiError
from robot.app import services
from robot.models import Attempt, Case, Event, IncomingWarning
from robot.phones import mask
from robot.redact import redact

bp = Blueprint("cases", __name__)


@bp.get("/api/v1/cases/<id:case_id>")
def get_case(case_id: int) -> Response:
    with services().sessions() as session:
        source = authenticate(session)
        case = session.get(Case, case_id)
        fed = session.scalar(
            select(IncomingWarning.id)
            .where(IncomingWarning.case_id == case_id, IncomingWarning.source_id == source.id)
            .limit(1)
        )
        # A case another source fed looks exactly like a missing one: no probing for numbers.
        if case is None or fed is None:
            raise ApiError(404, "not_found", "no such case for this source", field="case_id")
        attempts = session.scalars(
            select(Attempt).where(Attempt.case_id == case_id).order_by(Attempt.due_at, Attempt.id)
        ).all()
        events = session.scalars(
            select(Event).where(Event.case_id == case_id).order_by(Event.at, Event.id)
        ).all()
        return jsonify(case_document(case, attempts, events))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def case_document(case: Case, attempts: Any, events: Any) -> dict[str, Any]:
    return {
        "id": case.id,
        "phone": mask(case.phone),
        "state": case.state,
        "risk": case.risk,
        "fraud_type": case.fraud_type,
        "trigger": case.trigger,
        "critical": case.critical,
        "disposition": case.disposition,
        "opened_at": _iso(case.opened_at),
        "confirmed_at": _iso(case.confirmed_at),
        "escalated_at": _iso(case.escalated_at),
        "closed_at": _iso(case.closed_at),
        "attempts": [
            {
                "id": a.id,
                "channel": a.channel,
                "purpose": a.purpose,
                "to": mask(a.to_phone),
                "template": a.template,
                "state": a.state,
                "outcome": a.outcome,
                "provider_status": a.provider_status,
                "answered_by": a.answered_by,
                "digits": a.digits,
                "error_code": a.error_code,
                "due_at": _iso(a.due_at),
                "placed_at": _iso(a.placed_at),
                "finished_at": _iso(a.finished_at),
            }
            for a in attempts
        ],
        "timeline": [
            {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "data": redact(e.data)}
            for e in events
        ],
    }
