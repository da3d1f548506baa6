"""SMS: create and deliver outbound messages, and hand inbound ones to the service."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from werkzeug.datastructures import MultiDict

from robot.emulator.callees import behaviour_for
from robot.emulator.errors import ApiError
from robot.emulator.formats import API_VERSION, is_e164, new_sid
from robot.emulator.records import MessageRecord, Params
from robot.emulator.scheduler import Simulation
from robot.emulator.segments import count_segments
from robot.emulator.state import EmulatorState
from robot.emulator.twiml import TwimlError, parse_document, tag
from robot.emulator.webhooks import WebhookResult

MAX_BODY_CHARS = 1600
#: The sender Twilio "picks" from a Messaging Service's pool.
POOL_SENDER = "+15005550006"
# Emulated seconds.
QUEUE_SECONDS = 1.0  # queued → sent
DELIVERY_SECONDS = 2.0  # sent → delivered / undelivered
UNREACHABLE = (30003, "Unreachable destination handset")


def create_message(
    state: EmulatorState, account_sid: str, form: MultiDict[str, str]
) -> MessageRecord:
    """``POST …/Messages.json``."""
    fields = form.to_dict()
    with state.lock:
        fault = state.faults.take("messages")
    if fault is not None:
        raise fault
    to = fields.get("To", "").strip()
    from_ = fields.get("From", "").strip()
    service = fields.get("MessagingServiceSid", "").strip()
    body = fields.get("Body", "")
    callback = fields.get("StatusCallback", "").strip()
    if not to:
        raise ApiError(400, 21604, "A 'To' phone number is required.")
    if not is_e164(to):
        raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not from_ and not service:
        raise ApiError(400, 21603, "A 'From' phone number is required.")
    if not body and not fields.get("MediaUrl") and not fields.get("ContentSid"):
        raise ApiError(400, 21602, "Message body is required.")
    if len(body) > MAX_BODY_CHARS:
        raise ApiError(
            400, 21617, "The concatenated message body exceeds the 1600 character limit."
        )
    if callback and urlsplit(callback).scheme not in ("http", "https"):
        raise ApiError(400, 21609, f"Invalid StatusCallback url: {callback}")
    validity = fields.get("ValidityPeriod", "").strip()
    if validity and (not validity.isdigit() or not 1 <= int(validity) <= 36000):
        raise ApiError(400, 21624, "Invalid validity period value")
    with state.lock:
        callee = behaviour_for(to, state.overrides)
    if callee.kind == "invalid":
        raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if callee.kind == "landline":
        raise ApiError(400, 21614, f"'To' number {to} is not a valid mobile number")
    if callee.kind == "opted-out":
        raise ApiError(400, 21610, "Attempt to send to unsubscribed recipient")
    with state.changed:
        message = MessageRecord(
            sid=new_sid("SM"),
            account_sid=account_sid,
            to=to,
            from_=from_ or POOL_SENDER,
            body=body,
            direction="outbound-api",
            status="accepted" if service else "queued",
            num_segments=count_segments(body),
            callee_text=callee.text,
            messaging_service_sid=service or None,
            status_callback=callback or None,
            validity_period=int(validity) if validity else None,
            generation=state.generation,
            undeliverable=callee.kind == "unreachable",
        )
        message.add_event(message.status)
        state.messages[message.sid] = message
        state.changed.notify_all()
    state.scheduler.start(_deliver(state, message), lambda exc: _fail(state, message, exc))
    return message


def _deliver(state: EmulatorState, message: MessageRecord) -> Simulation:
    if message.messaging_service_sid:
        yield QUEUE_SECONDS / 2
        if not _set_status(state, message, "queued"):
            return
    yield QUEUE_SECONDS
    if not _set_status(state, message, "sent"):
        return
    yield DELIVERY_SECONDS
    if message.undeliverable:
        _set_status(state, message, "undelivered", UNREACHABLE)
    else:
        _set_status(state, message, "delivered")


def _fail(state: EmulatorState, message: MessageRecord, exc: BaseException) -> None:
    _set_status(state, message, "failed", (30008, f"Unknown error: {exc!r}"))


def _set_status(
    state: EmulatorState,
    message: MessageRecord,
    status: str,
    error: tuple[int, str] | None = None,
) -> bool:
    """Move the message on and post its status callback; False if the state was reset."""
    with state.changed:
        if message.generation != state.generation:
            return False
        message.status = status
        if status == "sent":
            message.date_sent = time.time()
        if error is not None:
            message.error_code, message.error_message = error
        message.add_event(status)
        state.changed.notify_all()
        url = message.status_callback
        params: Params = [
            ("AccountSid", message.account_sid),
            ("ApiVersion", API_VERSION),
            ("From", message.from_ or ""),
            ("MessageSid", message.sid),
            ("MessageStatus", status),
            ("SmsSid", message.sid),
            ("SmsStatus", status),
            ("To", message.to),
        ]
        if message.messaging_service_sid:
            params.append(("MessagingServiceSid", message.messaging_service_sid))
        if error is not None:
            params.append(("ErrorCode", str(error[0])))
    if url:
        generation = message.generation

        def deliver() -> None:
            if generation != state.generation:
                return
            _, record = state.webhooks.send_recorded(
                "sms-status-callback", url, "POST", params, status
            )
            with state.changed:
                if generation == state.generation:
                    message.callbacks.append(record)
                    state.changed.notify_all()

        state.lanes.submit(message.sid, deliver)
    return True


@dataclass(frozen=True)
class InboundResult:
    message: MessageRecord
    response: WebhookResult
    replies: list[MessageRecord]


def receive_sms(state: EmulatorState, from_: str, to: str, body: str, url: str) -> InboundResult:
    """A person texts the service: post the signed webhook now and return what it answered.

    ``<Message>`` replies in the answer are recorded as outbound-reply messages.
    """
    sid = new_sid("SM")
    segments = count_segments(body)
    params: Params = [
        ("AccountSid", state.settings.account_sid),
        ("ApiVersion", API_VERSION),
        ("Body", body),
        ("From", from_),
        ("MessageSid", sid),
        ("NumMedia", "0"),
        ("NumSegments", str(segments)),
        ("SmsMessageSid", sid),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("To", to),
    ]
    result, record = state.webhooks.send_recorded("inbound-sms", url, "POST", params)
    replies: list[MessageRecord] = []
    with state.changed:
        message = MessageRecord(
            sid=sid,
            account_sid=state.settings.account_sid,
            to=to,
            from_=from_,
            body=body,
            direction="inbound",
            status="received",
            num_segments=segments,
            generation=state.generation,
        )
        message.add_event("received")
        message.callbacks.append(record)
        state.messages[sid] = message
        for text in _reply_bodies(result):
            reply = MessageRecord(
                sid=new_sid("SM"),
                account_sid=message.account_sid,
                to=from_,
                from_=to,
                body=text,
                direction="outbound-reply",
                status="sent",
                num_segments=count_segments(text),
                generation=state.generation,
                date_sent=time.time(),
            )
            reply.add_event("sent", f"reply to {sid}")
            state.messages[reply.sid] = reply
            replies.append(reply)
        state.changed.notify_all()
    return InboundResult(message, result, replies)


def _reply_bodies(result: WebhookResult) -> list[str]:
    if not result.ok or not result.body.strip():
        return []
    try:
        document = parse_document(result.body, None)
    except TwimlError:
        return []
    bodies = []
    for element in document.root:
        if tag(element) == "Message":
            parts = [c for c in element if tag(c) == "Body"]
            text = "".join(parts[0].itertext()) if parts else (element.text or "")
            bodies.append(text.strip())
    return bodies
