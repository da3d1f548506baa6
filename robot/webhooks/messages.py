"""SMS status callbacks, and people texting or calling the robot's number back."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from robot import casework
from robot.app import services
from robot.dispatch import block_channels
from robot.models import Case, CaseState, Channel, utcnow
from robot.telephony.twiml import Document
from robot.timeline import record
from robot.webhooks.calls import (
    PERSON,
    _content,
    _urls,
    empty,
    twiml,
)
from robot.webhooks.outcomes import apply_sms_status
from robot.webhooks.security import twilio_signed
from robot.webhooks.status import PROVIDER, Applied, AttemptRow, FollowUp, apply_status

bp = Blueprint("twilio_messages", __name__)

#: Replies that mean "understood": the person read the warning.
_CONFIRM = re.compile(
    r"^\s*(1|ok|okay|yes|y|got it|understood|收到|好|好的|明白|知道了|已知晓)\s*[.!。！]?\s*$",
    re.IGNORECASE,
)
#: SMS failures that will not change by retrying: stop SMS to this number.
PERMANENT_SMS_CODES = {"30005", "30006", "21610", "21614", "30004"}


@bp.post("/twilio/sms/<code>/status")
@twilio_signed
def sms_status(code: str) -> Response:
    apply_status(code, request.form, apply_sms_status, "sms.status", _BLOCK_IF_PERMANENT)
    return empty()


def _permanent_for_the_person(attempt: AttemptRow, case_phone: str) -> bool:
    """A text that can never be delivered to the person's own number."""
    return attempt.error_code in PERMANENT_SMS_CODES and attempt.to_phone == case_phone


def _block_sms(applied: Applied) -> None:
    """Stop texting the person (after :func:`_permanent_for_the_person`)."""
    attempt = applied.attempt
    code = str(attempt.error_code)
    with Session(bind=applied.conn) as session:  # joins the callback's transaction
        case = session.get(Case, attempt.case_id, with_for_update=True)
        assert case is not None
        blocked = block_channels(case, Channel.SMS.value, int(code))
        data = {"channels": blocked, "code": code}
        record(session, case.id, "channel.blocked", PROVIDER, data, at=applied.now)
        session.flush()


_BLOCK_IF_PERMANENT = FollowUp(_permanent_for_the_person, _block_sms)


def _case_for(session: Session, number: str) -> Case | None:
    """The open case for the number, else its most recent one."""
    case = session.scalar(select(Case).where(Case.open_key == number).with_for_update())
    if case is None:
        case = session.scalar(
            select(Case).where(Case.phone == number).order_by(Case.opened_at.desc()).limit(1)
        )
    return case


@bp.post("/twilio/inbound/sms")
@twilio_signed
def inbound_sms() -> Response:
    svc = services()
    sender, body = request.form.get("From", ""), (request.form.get("Body") or "")[:1600]
    with svc.sessions.begin() as session:
        case = _case_for(session, sender)
        if case is None:
            return empty()
        now = utcnow()
        record(session, case.id, "sms.inbound", PERSON, dict(request.form), at=now)
        if case.state != CaseState.CLOSED.value:
            if _CONFIRM.match(body):
                casework.confirm(session, case, PERSON, "sms", now)
            else:
                # Anything else from a possible victim deserves a human reading it.
                casework.escalate(session, case, "the person replied by SMS", PERSON, now)
            svc.waker.in_transaction(session)
    svc.waker.after_commit()
    return empty()


@bp.post("/twilio/inbound/call")
@twilio_signed
def inbound_call() -> Response:
    """Someone calls the robot's number: their warning if they have a case, else a general word."""
    svc = services()
    caller = request.form.get("From", "")
    content, urls = _content(), _urls()
    with svc.sessions.begin() as session:
        case = _case_for(session, caller)
        has_case = case is not None and case.state != CaseState.CLOSED.value
        if case is not None:
            record(session, case.id, "call.inbound", PERSON, dict(request.form))
        speech = content.speech("inbound_greeting", case if has_case else None, has_case=has_case)
        if has_case:
            speech += content.speech("warning_call", case)
        speech += content.speech("key_menu", case if has_case else None)
    doc = Document().gather(urls.inbound_gather(), speech)
    return twiml(doc.speak(content.speech("goodbye", None)).hangup())


@bp.post("/twilio/inbound/gather")
@twilio_signed
def inbound_gather() -> Response:
    svc = services()
    caller, digits = request.form.get("From", ""), (request.form.get("Digits") or "")[:1]
    content, urls = _content(), _urls()
    doc = Document()
    with svc.sessions.begin() as session:
        case = _case_for(session, caller)
        now = utcnow()
        open_case = case if case is not None and case.state != CaseState.CLOSED.value else None
        if case is not None:
            data = {"digits": digits, "inbound": True}
            record(session, case.id, "call.key", PERSON, data, at=now)
        if digits == "1" and open_case is not None:
            casework.confirm(session, open_case, PERSON, "inbound call", now)
            doc.speak(content.speech("confirmed_thanks", open_case)).hangup()
        elif digits == "3" and open_case is not None:
            reason = "already paid (called in)"
            casework.escalate(session, open_case, reason, PERSON, now, critical=True)
            doc.speak(content.speech("already_paid", open_case)).hangup()
        elif digits in ("2", "3"):  # no open case: put them through to a person
            doc.speak(content.speech("connecting", open_case))
            doc.dial(svc.settings.center.call_center_number, urls.inbound_dial())
        else:
            doc.speak(content.speech("goodbye", None)).hangup()
        if open_case is not None:
            svc.waker.in_transaction(session)
    svc.waker.after_commit()
    return twiml(doc)


@bp.post("/twilio/inbound/dial")
@twilio_signed
def inbound_dial() -> Response:
    svc = services()
    caller, status = request.form.get("From", ""), request.form.get("DialCallStatus", "")
    with svc.sessions.begin() as session:
        case = _case_for(session, caller)
        if case is not None:
            now = utcnow()
            record(session, case.id, "call.put_through", PROVIDER, dict(request.form), at=now)
            if case.state != CaseState.CLOSED.value:
                casework.escalate(
                    session,
                    case,
                    f"called in and asked for an officer; put-through {status or 'failed'}",
                    PERSON,
                    now,
                    critical=True,
                )
                svc.waker.in_transaction(session)
    svc.waker.after_commit()
    return twiml(Document().hangup())
