"""What staff do to a case. Each is a CSRF-checked POST that goes through casework.

Every action first takes (or refreshes) the claim, so two operators never work a case at once,
then changes the case through :mod:`robot.casework`: the same timeline, the same policy review
and the same feedback to the source as the robot's own steps. The worker is woken on commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from flask import Response, flash, jsonify, redirect, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from robot import casework
from robot.app import services
from robot.dashboard import claims, i18n
from robot.dashboard.case_views import STAFF_DISPOSITIONS, STAFF_SMS_TEMPLATES, load_case
from robot.dashboard.identity import CurrentStaff
from robot.dashboard.web import (
    bp,
    claim_span,
    ensure_aware,
    fail,
    local,
    me,
    require_supervisor,
    safe_next,
    t,
    wants_json,
)
from robot.models import (
    Callback,
    Case,
    CaseState,
    Channel,
    Disposition,
    Purpose,
    Staff,
    utcnow,
)
from robot.timeline import record

Action = Callable[[Session, Case, CurrentStaff, datetime], str]
#: Longest note kept with a disposition or callback.
NOTE_LIMIT = 2000


def run(case_id: int, action: Action, *, needs_open: bool = True) -> Response | BaseResponse:
    """Claim (or keep) the case, do ``action`` in one transaction, wake the worker, answer."""
    staff = me()
    now = utcnow()
    svc = services()
    with svc.sessions.begin() as db:
        case_ = load_case(db, case_id, staff)
        if needs_open and case_.state == CaseState.CLOSED.value:
            fail(409, "closed", "action.case_closed")
        if case_.state != CaseState.CLOSED.value:
            held = claims.claim(db, case_id, staff, now, claim_span())
            if not held.ok:
                _refuse_claim(held)
        message = action(db, case_, staff, now)
        svc.waker.in_transaction(db)
    svc.waker.after_commit()
    return done(case_id, message)


def _refuse_claim(result: claims.ClaimResult) -> None:
    if result.status is claims.ClaimStatus.TAKEN:
        fail(409, "claimed", "claim.lost", who=result.holder or "?")
    if result.status is claims.ClaimStatus.CLOSED:
        fail(409, "closed", "claim.closed")
    fail(404, "not_found", "error.not_found")


def done(case_id: int, message: str) -> Response | BaseResponse:
    if wants_json():
        return jsonify({"ok": True, "case_id": case_id, "message": message})
    flash(message, "ok")
    return redirect(url_for("dashboard.case_page", case_id=case_id), code=303)


def note_field() -> str | None:
    note = (request.form.get("note") or "").strip()
    return note[:NOTE_LIMIT] or None


# --- claims -------------------------------------------------------------------------------------


@bp.post("/cases/<id:case_id>/claim")
def claim_case(case_id: int) -> Response | BaseResponse:
    staff = me()
    now = utcnow()
    with services().sessions.begin() as db:
        result = claims.claim(db, case_id, staff, now, claim_span())
    if not result.ok:
        _refuse_claim(result)
    return done(case_id, t("claim.won", until=local(result.until, "%H:%M")))


@bp.post("/cases/<id:case_id>/release")
def release_case(case_id: int) -> Response | BaseResponse:
    """Give my claim back to the queue (someone else's claim is left alone)."""
    staff = me()
    with services().sessions.begin() as db:
        released = claims.release(db, load_case(db, case_id, staff), staff, utcnow())
    if wants_json():
        return jsonify({"ok": True, "case_id": case_id, "released": released})
    if released:
        flash(t("claim.released"), "ok")
    return redirect(url_for("dashboard.queue"), code=303)


@bp.post("/cases/<id:case_id>/reassign")
def reassign_case(case_id: int) -> Response | BaseResponse:
    supervisor = require_supervisor()
    now = utcnow()
    target_id = request.form.get("staff_id", "").strip()
    with services().sessions.begin() as db:
        case_ = load_case(db, case_id, supervisor)
        if case_.state == CaseState.CLOSED.value:
            fail(409, "closed", "action.case_closed")
        target = None
        if target_id:
            valid = target_id.isascii() and target_id.isdigit() and len(target_id) < 19
            target = db.get(Staff, int(target_id)) if valid else None
            if target is None or not target.active or not claims.can_see(target, case_):
                fail(400, "bad_staff", "error.forbidden")
        claims.reassign(db, case_, target, supervisor, now, claim_span())
        who = target.display_name if target else t("reassign.to_queue")
    return done(case_id, t("reassign.done", who=who))


# --- contact the person -------------------------------------------------------------------------


@bp.post("/cases/<id:case_id>/call")
def call_person(case_id: int) -> Response | BaseResponse:
    """Bridge: the provider rings the operator's own phone, then dials the person (TwiML)."""

    def action(db: Session, case_: Case, staff: CurrentStaff, now: datetime) -> str:
        if not staff.phone:
            fail(400, "no_phone", "action.call_no_phone")
        casework.schedule_attempt(
            db,
            case_,
            channel=Channel.CALL.value,
            purpose=Purpose.STAFF_BRIDGE.value,
            template="staff_bridge",
            due_at=now,
            actor=staff.actor,
            now=now,
            reason="operator call",
            staff_id=staff.id,
            to_phone=staff.phone,
        )
        # The first leg rings the operator; the TwiML for STAFF_BRIDGE dials the person.
        casework.touch(case_, now, review=False)
        return t("action.call_done")

    return run(case_id, action)


@bp.post("/cases/<id:case_id>/sms")
def send_sms(case_id: int) -> Response | BaseResponse:
    template = request.form.get("template", "")

    def action(db: Session, case_: Case, staff: CurrentStaff, now: datetime) -> str:
        if template not in STAFF_SMS_TEMPLATES:
            fail(400, "bad_template", "action.sms")
        casework.schedule_attempt(
            db,
            case_,
            channel=Channel.SMS.value,
            purpose=Purpose.STAFF_SMS.value,
            template=template,
            due_at=now,
            actor=staff.actor,
            now=now,
            reason="operator SMS",
            staff_id=staff.id,
        )
        casework.touch(case_, now, review=False)
        return t("action.sms_done")

    return run(case_id, action)


@bp.post("/cases/<id:case_id>/notify-contacts")
def notify_contacts(case_id: int) -> Response | BaseResponse:
    def action(db: Session, case_: Case, staff: CurrentStaff, now: datetime) -> str:
        count = casework.notify_contacts(db, case_, "requested by staff", staff.actor, now)
        if count == 0:
            fail(400, "no_contacts", "action.notify_none")
        return t("action.notify_done", count=count)

    return run(case_id, action)


@bp.post("/cases/<id:case_id>/home-visit")
def home_visit(case_id: int) -> Response | BaseResponse:
    reason = note_field() or "requested by staff"

    def action(db: Session, case_: Case, staff: CurrentStaff, now: datetime) -> str:
        casework.request_home_visit(db, case_, reason, staff.actor, now)
        return t("action.visit_done")

    return run(case_id, action)


# --- callbacks ----------------------------------------------------------------------------------


def _parse_due(text: str) -> datetime | None:
    """A datetime-local value ("2026-11-21T14:30") in the dashboard's zone, as aware UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return ensure_aware(parsed)


@bp.post("/cases/<id:case_id>/callback")
def schedule_callback(case_id: int) -> Response | BaseResponse:
    due = _parse_due(request.form.get("due_at", ""))
    owner = request.form.get("owner", "me")
    note = note_field()

    def action(db: Session, case_: Case, staff: CurrentStaff, now: datetime) -> str:
        if due is None or due < now - timedelta(minutes=1):
            fail(400, "bad_time", "action.callback_bad_time")
        callback = Callback(
            case_id=case_.id,
            due_at=due,
            owner_id=staff.id if owner == "me" else None,
            created_by_id=staff.id,
            note=note,
        )
        db.add(callback)
        db.flush()
        record(
            db,
            case_.id,
            "callback.scheduled",
            staff.actor,
            {
                "callback_id": callback.id,
                "due_at": due.isoformat(),
                "owner": staff.username if owner == "me" else "anyone",
                "note": note,
            },
            at=now,
        )
        return t("action.callback_done")

    # A follow-up call may be booked on a closed case too.
    return run(case_id, action, needs_open=False)


@bp.post("/callbacks/<id:callback_id>/done")
def callback_done(callback_id: int) -> Response | BaseResponse:
    with services().sessions() as db:
        case_id = db.scalar(select(Callback.case_id).where(Callback.id == callback_id))
    if case_id is None:
        fail(404, "not_found", "error.not_found")

    def action(db: Session, case_: Case, staff: CurrentStaff, now: datetime) -> str:
        callback = db.get(Callback, callback_id)
        assert callback is not None
        if callback.owner_id not in (None, staff.id) and not staff.supervises:
            fail(403, "forbidden", "error.forbidden")
        if callback.done_at is None:
            callback.done_at = now
            record(
                db,
                case_.id,
                "callback.done",
                staff.actor,
                {"callback_id": callback.id, "note": note_field()},
                at=now,
            )
        return t("action.callback_completed")

    return run(case_id, action, needs_open=False)


# --- dispositions -------------------------------------------------------------------------------


def _disposition() -> Disposition:
    value = request.form.get("disposition", "")
    allowed = {d.value: d for d in STAFF_DISPOSITIONS}
    if value not in allowed:
        fail(400, "disposition_required", "action.disposition_required")
    return allowed[value]


@bp.post("/cases/<id:case_id>/disposition")
def record_disposition(case_id: int) -> Response | BaseResponse:
    """Record what happened; the case stays open (see :func:`apply_disposition`)."""
    disposition = _disposition()
    note = note_field()

    def action(db: Session, case_: Case, staff: CurrentStaff, now: datetime) -> str:
        apply_disposition(db, case_, disposition, staff, now, note)
        if disposition is Disposition.STILL_BELIEVES:
            return t("action.still_believes_open")
        return t("action.disposition_done")

    return run(case_id, action)


def apply_disposition(
    db: Session,
    case_: Case,
    disposition: Disposition,
    staff: CurrentStaff,
    now: datetime,
    note: str | None,
) -> None:
    """A disposition that leaves the case open.

    - dissuaded / confirmed: the person was reached; the robot stops calling (casework.confirm).
    - still believes the fraudster: not a success. The case stays escalated, in the queue.
    - already paid: critical, stays escalated for follow-through (110, stop-payment); close it
      with the same disposition when that is done.
    - the others are recorded as they are; closing is a separate decision.
    """
    casework.record_disposition(db, case_, disposition, staff.actor, now, note)
    if disposition in (Disposition.DISSUADED, Disposition.CONFIRMED):
        casework.confirm(db, case_, staff.actor, "staff", now)
    elif disposition is Disposition.STILL_BELIEVES:
        casework.escalate(db, case_, "still believes the fraudster", staff.actor, now)
    elif disposition is Disposition.ALREADY_PAID:
        casework.escalate(db, case_, "already paid", staff.actor, now, critical=True)


@bp.post("/cases/<id:case_id>/close")
def close_case(case_id: int) -> Response | BaseResponse:
    """Close with a disposition (required). Still-believes never closes a case."""
    disposition = _disposition()
    note = note_field()
    if disposition is Disposition.STILL_BELIEVES:
        fail(400, "still_believes", "action.still_believes_open")

    def action(db: Session, case_: Case, staff: CurrentStaff, now: datetime) -> str:
        if disposition in (Disposition.DISSUADED, Disposition.CONFIRMED):
            casework.confirm(db, case_, staff.actor, "staff", now)
        casework.close(db, case_, disposition, staff.actor, now, note=note)
        return t("action.closed")

    return run(case_id, action)


# --- the member of staff ------------------------------------------------------------------------


@bp.post("/me/language")
def set_language() -> BaseResponse:
    staff = me()
    chosen = request.form.get("language", "")
    if chosen in i18n.LANGUAGES:
        with services().sessions.begin() as db:
            row = db.get(Staff, staff.id)
            if row is not None:
                row.language = chosen
        session["lang"] = chosen
    return redirect(safe_next(request.form.get("next")), code=303)
