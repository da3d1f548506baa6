"""The case page: header, script, actions, attempts, contacts, callbacks and the full timeline.

The number is masked everywhere; revealing it is a POST that leaves a ``phone.revealed`` event.
Event data is passed through :func:`robot.redact.redact` before it is shown.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Response, jsonify, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased
from werkzeug.wrappers import Response as BaseResponse

from robot.app import services
from robot.dashboard import claims, i18n
from robot.dashboard.identity import CurrentStaff
from robot.dashboard.web import bp, claim_span, local, me, not_found, wants_json
from robot.models import (
    Attempt,
    Callback,
    Case,
    CaseState,
    Contact,
    Disposition,
    Event,
    HomeVisit,
    Staff,
    utcnow,
)
from robot.phones import mask
from robot.redact import redact
from robot.telephony.content import Content
from robot.timeline import record
from robot.voice.templates import SMS_KINDS, render

log = logging.getLogger(__name__)

#: Dispositions staff may record, in the order the form lists them (warned is the robot's).
STAFF_DISPOSITIONS: tuple[Disposition, ...] = (
    Disposition.DISSUADED,
    Disposition.STILL_BELIEVES,
    Disposition.ALREADY_PAID,
    Disposition.CONFIRMED,
    Disposition.WRONG_NUMBER,
    Disposition.UNREACHABLE,
    Disposition.FALSE_ALARM,
)
#: SMS templates an operator may send to the person (the relatives notice is for contacts).
STAFF_SMS_TEMPLATES: tuple[str, ...] = tuple(sorted(SMS_KINDS - {"relatives_notice"}))

#: For provider callbacks, the few fields worth a glance; the rest is under "details".
_SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    "call.status": ("CallStatus", "AnsweredBy", "CallDuration", "ErrorCode"),
    "sms.status": ("MessageStatus", "ErrorCode"),
    "call.amd": ("AnsweredBy",),
    "call.put_through": ("DialCallStatus", "DialCallDuration"),
    "call.answered": (),
}


@dataclass(frozen=True)
class TimelineEntry:
    at: str
    actor: str
    kind: str
    label: str
    summary: str
    details: str
    staff: bool


def timeline(session: Session, case_id: int, language: str) -> list[TimelineEntry]:
    events = session.scalars(
        select(Event).where(Event.case_id == case_id).order_by(Event.at, Event.id)
    ).all()
    return [_entry(event, language) for event in events]


def _entry(event: Event, language: str) -> TimelineEntry:
    data = redact(event.data or {})
    keys = _SUMMARY_KEYS.get(event.kind)
    if keys is None:
        keys = tuple(k for k, v in data.items() if v not in (None, "", [], {}))
    parts = []
    for key in keys:
        value = data.get(key)
        if value in (None, "", [], {}):
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={_short(str(value))}")
    return TimelineEntry(
        at=local(event.at),
        actor=event.actor,
        kind=event.kind,
        label=i18n.label(language, "event", event.kind),
        summary=", ".join(parts),
        details=json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) if data else "",
        staff=event.actor.startswith("staff:"),
    )


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_case(session: Session, case_id: int, staff: CurrentStaff) -> Case:
    """The case if this member of staff may see it, else 404 (no probing other areas)."""
    case_: Case | None = session.scalar(
        select(Case).where(Case.id == case_id, *claims.scope(staff))
    )
    if case_ is None:
        not_found()
    return case_


def script_text(case_: Case, language: str) -> str:
    settings = services().settings
    try:
        return render(
            "warning_call",
            fraud_type=case_.fraud_type,
            language=language,
            context={"name": case_.name or ""},
            settings=settings.voice,
            center=settings.center,
        ).text
    except Exception:  # a broken template must not hide the case from the operator
        log.exception("rendering the script for case %s failed", case_.id)
        return ""


def sms_previews(case_: Case) -> dict[str, str]:
    """What each SMS template would send to this person (in the person's language)."""
    settings = services().settings
    content = services().extras.get("dashboard_content")
    if not isinstance(content, Content):
        content = services().extras["dashboard_content"] = Content(settings)
    previews = {}
    for kind in STAFF_SMS_TEMPLATES:
        try:
            previews[kind] = content.text(kind, case_).text
        except Exception:
            log.exception("rendering %s for case %s failed", kind, case_.id)
            previews[kind] = ""
    return previews


def stamp(session: Session, case_: Case) -> str:
    """Changes whenever the case or its timeline does (the page polls it to refresh)."""
    last = session.scalar(select(func.max(Event.id)).where(Event.case_id == case_.id))
    return f"{case_.version}.{last or 0}.{case_.assignee_id or 0}"


def page_context(
    session: Session, case_: Case, staff: CurrentStaff, now: datetime
) -> dict[str, Any]:
    settings = services().settings
    language = staff.language
    holder = session.get(Staff, case_.assignee_id) if case_.assignee_id else None
    owner = aliased(Staff)
    callbacks = session.execute(
        select(Callback, owner.display_name)
        .outerjoin(owner, owner.id == Callback.owner_id)
        .where(Callback.case_id == case_.id)
        .order_by(Callback.done_at.is_not(None), Callback.due_at)
    ).all()
    staff_choices: list[Staff] = []
    if staff.supervises:
        candidates = session.scalars(
            select(Staff).where(Staff.active.is_(True)).order_by(Staff.display_name)
        ).all()
        staff_choices = [s for s in candidates if claims.can_see(s, case_)]
    return {
        "case": case_,
        "now": now,
        "holder": holder,
        "claim_live": claims.claim_is_live(case_, now),
        "claim_mine": claims.claim_is_live(case_, now) and case_.assignee_id == staff.id,
        "urgency": claims.urgency(case_),
        "deadline": claims.respond_by(case_, settings.dashboard),
        "attempts": session.scalars(
            select(Attempt).where(Attempt.case_id == case_.id).order_by(Attempt.id)
        ).all(),
        "contacts": session.scalars(
            select(Contact).where(Contact.case_id == case_.id).order_by(Contact.id)
        ).all(),
        "callbacks": callbacks,
        "visits": session.scalars(
            select(HomeVisit).where(HomeVisit.case_id == case_.id).order_by(HomeVisit.id)
        ).all(),
        "timeline": timeline(session, case_.id, language),
        "script": script_text(case_, language),
        "sms_previews": sms_previews(case_),
        "dispositions": STAFF_DISPOSITIONS,
        "staff_choices": staff_choices,
        "closed": case_.state == CaseState.CLOSED.value,
        "stamp": stamp(session, case_),
        "stamp_url": url_for("dashboard.case_stamp", case_id=case_.id),
        "case_url": url_for("dashboard.case_page", case_id=case_.id),
        "poll_ms": int(max(settings.dashboard.poll_seconds, 1.0) * 2000),
        "revealed": None,
        # datetime-local values are read in the dashboard's zone (not the browser's).
        "callback_default": local(now + timedelta(hours=1), "%Y-%m-%dT%H:%M"),
        "zone_name": settings.dashboard.timezone,
    }


@bp.get("/cases/<id:case_id>")
def case_page(case_id: int) -> str:
    staff = me()
    now = utcnow()
    with services().sessions.begin() as session:
        case_ = load_case(session, case_id, staff)
        # Opening the page is activity: the holder's claim lasts a while longer. The page's own
        # refreshes after a change (?auto=1) are not.
        if (
            request.args.get("auto") != "1"
            and claims.claim_is_live(case_, now)
            and case_.assignee_id == staff.id
        ):
            case_.claim_expires_at = now + claim_span()
        context = page_context(session, case_, staff, now)
    return render_template("dashboard/case.html", **context)


@bp.get("/cases/<id:case_id>/stamp.json")
def case_stamp(case_id: int) -> Response:
    staff = me()
    with services().sessions() as session:
        case_ = load_case(session, case_id, staff)
        return jsonify({"stamp": stamp(session, case_)})


@bp.post("/cases/<id:case_id>/reveal")
def reveal_phone(case_id: int) -> Response | BaseResponse | str:
    """Show the full number: a POST, so that every reveal is on the timeline."""
    staff = me()
    now = utcnow()
    with services().sessions.begin() as session:
        case_ = load_case(session, case_id, staff)
        record(
            session,
            case_.id,
            "phone.revealed",
            staff.actor,
            {"phone": mask(case_.phone), "role": staff.role},
            at=now,
        )
        if wants_json():
            return jsonify({"case_id": case_.id, "phone": case_.phone})
        session.flush()
        context = page_context(session, case_, staff, now)
        context["revealed"] = case_.phone
    return render_template("dashboard/case.html", **context)
