"""Apply provider callbacks to attempts: monotonic, idempotent, order-tolerant."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from robot.models import AttemptState, Outcome


class Trackable(Protocol):
    """What the rules read and change on an attempt: the ORM row, or a plain copy of it
    (robot.webhooks.status applies callbacks without loading ORM objects)."""

    purpose: str
    state: str
    provider_sid: str | None
    provider_status: str | None
    last_sequence: int
    outcome: str | None
    answered_by: str | None
    answered_at: datetime | None
    digits: str | None
    error_code: str | None
    duration_seconds: int | None
    finished_at: datetime | None
    lease_until: datetime | None


CALL_TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}
SMS_RANK = {
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
}
SMS_TERMINAL = {"delivered", "undelivered", "failed"}
#: A person who hangs up within this many seconds of answering did not hear the warning.
EARLY_HANGUP_SECONDS = 10

_FINAL_STATES = {
    AttemptState.FINISHED.value,
    AttemptState.CANCELED.value,
    AttemptState.FAILED.value,
}


def is_final(attempt: Trackable) -> bool:
    return attempt.state in _FINAL_STATES


def apply_call_status(attempt: Trackable, params: Mapping[str, str], now: datetime) -> bool:
    """Update the attempt from a status callback; False if it changes nothing (stale or repeat)."""
    if is_final(attempt):
        return False  # a late "ringing" never undoes "completed"
    status = params.get("CallStatus", "")
    sequence = _int(params.get("SequenceNumber"))
    if sequence is not None:
        if sequence <= attempt.last_sequence:
            return False
        attempt.last_sequence = sequence
    elif status == attempt.provider_status:
        return False
    attempt.provider_sid = attempt.provider_sid or params.get("CallSid")
    attempt.provider_status = status
    if status == "in-progress" and attempt.answered_at is None:
        attempt.answered_at = now
    if params.get("AnsweredBy") and not attempt.answered_by:
        attempt.answered_by = params["AnsweredBy"]
    if status in CALL_TERMINAL:
        attempt.duration_seconds = _int(params.get("CallDuration"))
        if status != "completed":  # a completed call's SIP 200 is not an error
            code = params.get("ErrorCode") or params.get("SipResponseCode")
            attempt.error_code = attempt.error_code or (code or None)
        finish(attempt, call_outcome(attempt, status), now)
    return True


def call_outcome(attempt: Trackable, status: str) -> Outcome:
    # Key 1 confirms a warning; on a follow-up it only means "all is well".
    warning = attempt.purpose in ("warning", "retry")
    if warning and attempt.digits and "1" in attempt.digits:
        return Outcome.CONFIRMED
    if (attempt.answered_by or "").startswith("machine") or attempt.answered_by == "fax":
        return Outcome.VOICEMAIL
    if status == "completed":
        if attempt.digits:
            return Outcome.ANSWERED
        if (attempt.duration_seconds or 0) < EARLY_HANGUP_SECONDS:
            return Outcome.HUNG_UP
        return Outcome.ANSWERED
    return {
        "busy": Outcome.BUSY,
        "no-answer": Outcome.NO_ANSWER,
        "canceled": Outcome.NO_ANSWER,
    }.get(status, Outcome.FAILED)


def apply_sms_status(attempt: Trackable, params: Mapping[str, str], now: datetime) -> bool:
    if is_final(attempt):
        return False
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    if SMS_RANK.get(status, -1) <= SMS_RANK.get(attempt.provider_status or "", -1):
        return False  # repeated or reordered
    attempt.provider_sid = attempt.provider_sid or params.get("MessageSid")
    attempt.provider_status = status
    if params.get("ErrorCode"):
        attempt.error_code = params["ErrorCode"]
    if status in SMS_TERMINAL:
        outcome = {"delivered": Outcome.DELIVERED, "undelivered": Outcome.UNDELIVERED}.get(
            status, Outcome.FAILED
        )
        finish(attempt, outcome, now)
    return True


def finish(attempt: Trackable, outcome: Outcome, now: datetime) -> None:
    attempt.outcome = outcome.value
    attempt.state = AttemptState.FINISHED.value
    attempt.finished_at = now
    attempt.lease_until = None


def _int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None
