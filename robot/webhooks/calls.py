"""The robot's outbound call: its TwiML, the key menu, status, AMD and the put-through leg."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Blueprint, Response, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from robot import casework
from robot.app import services
from robot.models import Attempt, Case, Contact, Purpose, Staff, utcnow
from robot.telephony.content import Content
from robot.telephony.twiml import Document, Speech
from robot.telephony.urls import WebhookUrls
from robot.timeline import record
from robot.webhooks.outcomes import apply_call_status
from robot.webhooks.security import twilio_signed
from robot.webhooks.status import PROVIDER, apply_status

log = logging.getLogger(__name__)
bp = Blueprint("twilio_calls", __name__)

PERSON = "person"


def twiml(document: Document) -> Response:
    return Response(document.render(), mimetype="text/xml")


#: The answer to most callbacks, rendered once.
_EMPTY = Document().render()


def empty() -> Response:
    return Response(_EMPTY, mimetype="text/xml")


@dataclass
class CallContext:
    session: Session
    attempt: Attempt
    case: Case
    contact: Contact | None


@contextmanager
def attempt_for(code: str) -> Iterator[CallContext | None]:
    """The attempt named in the URL, locked for this request, in one transaction."""
    svc = services()
    with svc.sessions.begin() as session:
        attempt = session.scalar(select(Attempt).where(Attempt.code == code).with_for_update())
        if attempt is None:
            yield None
            return
        # Locked too: the worker's review may be changing the same case right now.
        case = session.get(Case, attempt.case_id, with_for_update=True)
        assert case is not None
        contact = session.get(Contact, attempt.contact_id) if attempt.contact_id else None
        yield CallContext(session, attempt, case, contact)
        # Wake the worker only when this request left the case due for a review (touch());
        # a future review time set earlier by the policy needs no wake-up.
        wake = case.next_review_at is not None and case.next_review_at <= utcnow()
        if wake:
            svc.waker.in_transaction(session)
    if wake:
        svc.waker.after_commit()


def _content() -> Content:
    svc = services()
    content = svc.extras.get("content")
    if content is None:
        content = svc.extras["content"] = Content(svc.settings)
    assert isinstance(content, Content)
    return content


def _urls() -> WebhookUrls:
    return WebhookUrls(services().settings.server.public_base_url)


def _round() -> int:
    try:
        return max(1, min(3, int(request.args.get("round", "1"))))
    except ValueError:
        return 1


def script_kind(attempt: Attempt) -> str:
    if attempt.purpose == Purpose.CONTACT_NOTICE.value:
        return "relatives_notice"
    if attempt.purpose == Purpose.FOLLOW_UP.value:
        return "follow_up_call"
    return "warning_call"


def call_document(ctx: CallContext, round_: int) -> Document:
    """The script, then one key: 1 understood, 2 officer, 3 already paid, 9 repeat."""
    content, urls = _content(), _urls()
    kind = script_kind(ctx.attempt)
    doc = Document()
    if ctx.attempt.purpose == Purpose.STAFF_BRIDGE.value:
        # The operator answered their own phone: connect them to the person from our number.
        doc.speak([operator_prompt(ctx)])
        return doc.dial(
            ctx.case.phone, urls.call_dial(ctx.attempt.code), caller_id=_caller_id(ctx.case.phone)
        )
    if kind == "relatives_notice":
        # Relatives hear the notice twice and no menu: the least that helps.
        notice = content.speech(kind, ctx.case, ctx.contact)
        return doc.speak(notice).pause(1).speak(notice).hangup()
    menu = "follow_up_menu" if kind == "follow_up_call" else "key_menu"
    speech = content.speech(kind, ctx.case) + content.speech(menu, ctx.case)
    doc.gather(urls.call_gather(ctx.attempt.code, round_), speech)
    if round_ == 1:
        return doc.redirect(urls.call_twiml(ctx.attempt.code, 2))  # no key: once more
    return doc.speak(content.speech("goodbye", ctx.case)).hangup()


_OPERATOR_PROMPTS = {
    "zh-CN": "案件{id}，正在接通当事人。",
    "en-US": "Case {id}. Connecting you to the person.",
}


def operator_prompt(ctx: CallContext) -> Speech:
    """What the operator hears on their own phone before the person is dialled."""
    staff = ctx.session.get(Staff, ctx.attempt.staff_id) if ctx.attempt.staff_id else None
    language = staff.language if staff and staff.language in _OPERATOR_PROMPTS else "zh-CN"
    text = _OPERATOR_PROMPTS[language].format(id=ctx.case.id)
    return Speech("Say", text, _content().say_attrs(language))


def _caller_id(to: str) -> str:
    from robot.dispatch import caller_number

    return caller_number(services().settings.twilio.from_numbers, to)


@bp.post("/twilio/call/<code>/twiml")
@twilio_signed
def call_twiml(code: str) -> Response:
    with attempt_for(code) as ctx:
        if ctx is None:
            return twiml(Document().hangup())
        if _round() == 1:
            record(
                ctx.session,
                ctx.case.id,
                "call.answered",
                PERSON,
                {"sid": request.form.get("CallSid")},
                attempt_id=ctx.attempt.id,
            )
        return twiml(call_document(ctx, _round()))


@bp.post("/twilio/call/<code>/gather")
@twilio_signed
def call_gather(code: str) -> Response:
    digits = (request.form.get("Digits") or "")[:1]
    with attempt_for(code) as ctx:
        if ctx is None:
            return twiml(Document().hangup())
        return twiml(_on_key(ctx, digits, _round()))


def _on_key(ctx: CallContext, digits: str, round_: int) -> Document:
    now = utcnow()
    content, urls = _content(), _urls()
    attempt, case, session = ctx.attempt, ctx.case, ctx.session
    if not digits:
        return (
            call_document(ctx, round_ + 1)
            if round_ == 1
            else Document().speak(content.speech("goodbye", case)).hangup()
        )
    attempt.digits = ((attempt.digits or "") + digits)[-40:]
    record(
        session,
        case.id,
        "call.key",
        PERSON,
        {"digits": digits, "purpose": attempt.purpose},
        attempt_id=attempt.id,
        at=now,
    )
    follow_up = attempt.purpose == Purpose.FOLLOW_UP.value
    settings = services().settings
    if digits == "1":
        if not follow_up:
            casework.confirm(session, case, PERSON, "call", now)
        return Document().speak(content.speech("confirmed_thanks", case)).hangup()
    if digits == "2":
        if follow_up:
            casework.escalate(
                session,
                case,
                "follow-up: someone asked for money again",
                PERSON,
                now,
                critical=True,
            )
        else:
            case.critical = True
            casework.touch(case, now)
            record(
                session,
                case.id,
                "case.critical",
                PERSON,
                {"reason": "asked for an officer"},
                at=now,
            )
        doc = Document().speak(content.speech("connecting", case))
        return doc.dial(settings.center.call_center_number, urls.call_dial(attempt.code))
    if digits == "3":
        casework.escalate(session, case, "already paid", PERSON, now, critical=True)
        return Document().speak(content.speech("already_paid", case)).hangup()
    if digits == "9":
        return call_document(ctx, round_)
    return (
        call_document(ctx, round_ + 1)
        if round_ == 1
        else Document().speak(content.speech("goodbye", case)).hangup()
    )


@bp.post("/twilio/call/<code>/dial")
@twilio_signed
def call_dial(code: str) -> Response:
    """The put-through leg ended: answered, or the case goes to the head of the queue."""
    status = request.form.get("DialCallStatus", "")
    with attempt_for(code) as ctx:
        if ctx is None:
            return empty()
        now = utcnow()
        record(
            ctx.session,
            ctx.case.id,
            "call.put_through",
            PROVIDER,
            dict(request.form),
            attempt_id=ctx.attempt.id,
            at=now,
        )
        if ctx.attempt.purpose == Purpose.STAFF_BRIDGE.value:
            return twiml(Document().hangup())  # the operator records what happened
        if status == "completed":
            casework.escalate(
                ctx.session,
                ctx.case,
                "spoke to the call center; needs a disposition",
                PERSON,
                now,
                critical=True,
            )
            return twiml(Document().hangup())
        casework.escalate(
            ctx.session,
            ctx.case,
            f"asked for an officer; put-through {status or 'failed'}",
            PERSON,
            now,
            critical=True,
        )
        return twiml(Document().speak(_content().speech("goodbye", ctx.case)).hangup())


@bp.post("/twilio/call/<code>/status")
@twilio_signed
def call_status(code: str) -> Response:
    apply_status(code, request.form, apply_call_status, "call.status")
    return empty()


@bp.post("/twilio/call/<code>/amd")
@twilio_signed
def call_amd(code: str) -> Response:
    answered_by = request.form.get("AnsweredBy", "unknown")
    with attempt_for(code) as ctx:
        if ctx is None or ctx.attempt.answered_by:
            return empty()
        now = utcnow()
        ctx.attempt.answered_by = answered_by
        record(
            ctx.session,
            ctx.case.id,
            "call.amd",
            PROVIDER,
            dict(request.form),
            attempt_id=ctx.attempt.id,
            at=now,
        )
        if answered_by.startswith("machine") and ctx.attempt.outcome is None:
            # Leave the short voicemail; the worker updates the live call (no calls out from here).
            ctx.attempt.pending_command = "voicemail"
            casework.touch(ctx.case, now)
        return empty()
