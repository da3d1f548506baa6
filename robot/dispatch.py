"""Claim due attempts and hand them to the provider; record what it said.

An attempt is placed exactly once: a claim is a conditional UPDATE (compare-and-swap on
SQLite, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and carries a lease. A worker that dies leaves
its claims to expire; the next claimant asks the provider whether the call was already made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from robot import casework
from robot.config import Settings
from robot.db import is_postgres, read_session
from robot.models import (
    Attempt,
    AttemptState,
    Case,
    CaseState,
    Channel,
    Contact,
    Outcome,
    PacingState,
    utcnow,
)
from robot.pacing import LATE_TOLERANCE, Pacer
from robot.phones import mask
from robot.providers import CallRequest, Provider, ProviderError, Receipt, SmsRequest
from robot.telephony.content import Content
from robot.telephony.urls import WebhookUrls
from robot.timeline import record

log = logging.getLogger(__name__)

#: The number itself is invalid or does not exist: neither SMS nor calls can reach it.
INVALID_NUMBER_CODES = frozenset({21211, 21217, 30005})


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    reclaimed: bool


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        provider: Provider,
        worker_id: str,
        *,
        threads: int = 8,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.provider = provider
        self.worker_id = worker_id
        self.urls = WebhookUrls(settings.server.public_base_url)
        self.content = Content(settings)
        self.pacer = Pacer(
            sessions,
            {"call": settings.worker.calls_per_second, "sms": settings.worker.sms_per_second},
        )
        self.pacer.ensure_rows()
        self._postgres = is_postgres(sessions.kw["bind"])
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="place")
        self._strikes = False

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # --- claiming -------------------------------------------------------------------------------

    def claim(self, channel: str, limit: int, now: datetime) -> list[Claimed]:
        """Take up to ``limit`` due attempts of one channel under a lease."""
        lease = now + timedelta(seconds=self.settings.worker.lease_seconds)
        due = and_(
            Attempt.channel == channel,
            or_(
                and_(Attempt.state == AttemptState.SCHEDULED.value, Attempt.due_at <= now),
                # A claim whose worker died: its lease ran out.
                and_(Attempt.state == AttemptState.CLAIMED.value, Attempt.lease_until < now),
            ),
        )
        with self.sessions.begin() as session:
            if channel == Channel.CALL.value:
                limit = min(limit, self._free_call_lines(session))
            if limit <= 0:
                return []
            query = (
                select(Attempt.id, Attempt.state, Attempt.first_claimed_at)
                .where(due)
                .order_by(Attempt.due_at)
                .limit(limit)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            candidates = session.execute(query).all()
            if not candidates:
                return []
            ids = [row.id for row in candidates]
            # The WHERE repeats the due condition: on SQLite this UPDATE is the compare-and-swap.
            claimed = session.execute(
                update(Attempt)
                .where(Attempt.id.in_(ids), due)
                .values(
                    state=AttemptState.CLAIMED.value,
                    claimed_by=self.worker_id,
                    lease_until=lease,
                    first_claimed_at=func.coalesce(Attempt.first_claimed_at, now),
                )
                .returning(Attempt.id)
                .execution_options(synchronize_session=False)
            ).scalars()
            won = set(claimed)
        return [
            # Claimed before (a dead worker's lease, or a timeout that may have created the
            # call after all): the provider is asked before another call is made.
            Claimed(
                row.id,
                channel,
                row.state == AttemptState.CLAIMED.value or row.first_claimed_at is not None,
            )
            for row in candidates
            if row.id in won
        ]

    def _free_call_lines(self, session: Session) -> int:
        cap = self.settings.worker.max_concurrent_calls
        if cap <= 0:
            return 10**9
        if self._postgres:
            # Lock the pacing row so two workers cannot both see the same free line (SQLite
            # needs nothing: BEGIN IMMEDIATE already serialises writers).
            session.execute(
                select(PacingState.channel).where(PacingState.channel == "call").with_for_update()
            )
        busy = session.scalar(
            select(func.count())
            .select_from(Attempt)
            .where(
                Attempt.channel == Channel.CALL.value,
                Attempt.state.in_((AttemptState.CLAIMED.value, AttemptState.PLACED.value)),
            )
        )
        return cap - int(busy or 0)

    # --- placing --------------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> int:
        """Claim and place what is due now; returns how many attempts were handed over."""
        now = now or utcnow()
        placed = 0
        for channel in (Channel.SMS.value, Channel.CALL.value):
            if self.pacer.blocked_until(channel) > time.time():
                continue
            claimed = self.claim(channel, self.settings.worker.batch_size, now)
            if claimed:
                placed += sum(self._pool.map(self.place, claimed))
        return placed

    def place(self, claimed: Claimed) -> int:
        try:
            return self._place(claimed)
        except Exception:  # one bad attempt must not stop the others; its lease will expire
            log.exception("placing attempt %s failed unexpectedly", claimed.id)
            return 0

    def _place(self, claimed: Claimed) -> int:
        with read_session(self.sessions) as session:
            attempt = session.get(Attempt, claimed.id)
            if attempt is None or attempt.claimed_by != self.worker_id:
                return 0
            case = session.get(Case, attempt.case_id)
            assert case is not None
            contact = session.get(Contact, attempt.contact_id) if attempt.contact_id else None
            stale = self._stale_reason(attempt, case)
            request = None if stale else self._request(attempt, case, contact)
            session.expunge_all()
        if stale:
            self._cancel(claimed.id, stale)
            return 0
        if claimed.reclaimed and attempt.channel == Channel.CALL.value and attempt.first_claimed_at:
            # The first claimant died mid-request: the call may exist already. Adopt it.
            try:
                existing = self.provider.find_call(attempt.to_phone, attempt.first_claimed_at)
            except ProviderError as exc:
                self._transient(attempt, exc)
                return 0
            if existing is not None:
                self._record_placed(attempt, Receipt(existing.sid, existing.status), adopted=True)
                return 1
        horizon = self.settings.worker.lease_seconds / 2
        started = time.time()
        for _ in range(10):
            slot = self.pacer.take_slot(attempt.channel, horizon=horizon)
            if slot is None:
                self._release(attempt.id, "pacing")
                return 0
            delay = slot - time.time()
            if delay > 0:
                time.sleep(delay)
            if not self.pacer.paced(attempt.channel) or time.time() - slot <= LATE_TOLERANCE:
                break
            # Woke too late for this slot: sending now could crowd the next one. Take another.
        if time.time() - started > 0.05:
            # We waited for a slot: the person may have confirmed (or the case closed) meanwhile.
            stale = self._still_needed(attempt)
            if stale:
                self._cancel(attempt.id, stale)
                return 0
        try:
            if isinstance(request, CallRequest):
                receipt = self.provider.place_call(request)
            else:
                assert request is not None
                receipt = self.provider.send_sms(request)
        except ProviderError as exc:
            if exc.rate_limited:
                self.pacer.rate_limited(attempt.channel)
                self._strikes = True
            if exc.permanent:
                self._permanent(attempt, exc)
            else:
                self._transient(attempt, exc)
            return 0
        if self._strikes:
            self._strikes = False
            self.pacer.succeeded(attempt.channel)
        self._record_placed(attempt, receipt)
        return 1

    def _still_needed(self, attempt: Attempt) -> str | None:
        """The stale reason, read afresh; None when the attempt should still go out."""
        with read_session(self.sessions) as session:
            case = session.get(Case, attempt.case_id)
            return self._stale_reason(attempt, case) if case is not None else "case gone"

    def _stale_reason(self, attempt: Attempt, case: Case) -> str | None:
        if case.drill and "twilio.com" in self.settings.twilio.api_base_url:
            return "drill case: never placed through a real carrier"
        robot_to_person = attempt.purpose in casework.ROBOT_PURPOSES
        if robot_to_person and case.confirmed_at is not None:
            return "confirmed"
        if robot_to_person and case.state == CaseState.CLOSED.value:
            return "closed"
        if (
            attempt.channel == Channel.SMS.value
            and case.sms_blocked
            and attempt.to_phone == case.phone
        ):
            return "sms blocked for this number"
        if (
            attempt.channel == Channel.CALL.value
            and case.calls_blocked
            and attempt.to_phone == case.phone
        ):
            return "calls blocked for this number"
        return None

    def _request(
        self, attempt: Attempt, case: Case, contact: Contact | None
    ) -> CallRequest | SmsRequest:
        twilio = self.settings.twilio
        if attempt.channel == Channel.SMS.value:
            body = self.content.text(attempt.template, case, contact).text
            return SmsRequest(
                to=attempt.to_phone,
                body=body,
                status_callback=self.urls.sms_status(attempt.code),
                from_=None
                if twilio.messaging_service_sid
                else caller_number(twilio.from_numbers, case.phone),
                messaging_service_sid=twilio.messaging_service_sid or None,
                validity_seconds=twilio.sms_validity_seconds,
            )
        return CallRequest(
            to=attempt.to_phone,
            from_=caller_number(twilio.from_numbers, case.phone),
            twiml_url=self.urls.call_twiml(attempt.code),
            status_callback=self.urls.call_status(attempt.code),
            amd_callback=self.urls.call_amd(attempt.code)
            if twilio.answering_machine_detection
            else None,
            ring_timeout=twilio.ring_timeout,
        )

    # --- recording ------------------------------------------------------------------------------

    def _record_placed(self, attempt: Attempt, receipt: Receipt, *, adopted: bool = False) -> None:
        now = utcnow()
        with self.sessions.begin() as session:
            # Only if still ours: a fast callback may already have finished the attempt.
            session.execute(
                update(Attempt)
                .where(Attempt.id == attempt.id, Attempt.state == AttemptState.CLAIMED.value)
                .values(state=AttemptState.PLACED.value, lease_until=None)
            )
            session.execute(
                update(Attempt)
                .where(Attempt.id == attempt.id)
                .values(
                    provider_sid=func.coalesce(Attempt.provider_sid, receipt.sid),
                    provider_status=func.coalesce(Attempt.provider_status, receipt.status),
                    placed_at=func.coalesce(Attempt.placed_at, now),
                )
            )
            record(
                session,
                attempt.case_id,
                "attempt.placed",
                f"worker:{self.worker_id}",
                {
                    "channel": attempt.channel,
                    "purpose": attempt.purpose,
                    "to": mask(attempt.to_phone),
                    "sid": receipt.sid,
                    "adopted": adopted,
                },
                attempt_id=attempt.id,
                at=now,
            )

    def _cancel(self, attempt_id: int, reason: str) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(Attempt)
                .where(Attempt.id == attempt_id, Attempt.claimed_by == self.worker_id)
                .values(
                    state=AttemptState.CANCELED.value,
                    lease_until=None,
                    error_message=reason,
                    finished_at=utcnow(),
                )
            )

    def _release(self, attempt_id: int, reason: str) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(Attempt)
                .where(
                    Attempt.id == attempt_id,
                    Attempt.state == AttemptState.CLAIMED.value,
                    Attempt.claimed_by == self.worker_id,
                )
                .values(state=AttemptState.SCHEDULED.value, lease_until=None, claimed_by=None)
            )

    def _transient(self, attempt: Attempt, exc: ProviderError) -> None:
        now = utcnow()
        actor = f"worker:{self.worker_id}"
        with self.sessions.begin() as session:
            row = session.get(Attempt, attempt.id)
            if row is None or row.state != AttemptState.CLAIMED.value:
                return
            if row.provider_sid:
                # The provider answered late but a callback proves it took the request.
                row.state = AttemptState.PLACED.value
                row.lease_until = None
                row.placed_at = row.placed_at or now
                return
            row.tries += 1
            row.error_code = str(exc.code) if exc.code else None
            row.error_message = exc.message[:500]
            row.claimed_by = None
            row.lease_until = None
            if row.tries > self.settings.twilio.max_transient_retries:
                row.state = AttemptState.FAILED.value
                row.outcome = Outcome.FAILED.value
                row.finished_at = now
                self._review(session, row.case_id, now)
                record(
                    session,
                    row.case_id,
                    "attempt.failed",
                    actor,
                    {"error": exc.message, "code": exc.code, "tries": row.tries},
                    attempt_id=row.id,
                    at=now,
                )
                return
            # Exponential backoff with the provider's own slow-down on top for a 429.
            row.state = AttemptState.SCHEDULED.value
            row.due_at = now + timedelta(seconds=min(30.0, 0.5 * 2 ** (row.tries - 1)))
            record(
                session,
                row.case_id,
                "attempt.retrying",
                actor,
                {"error": exc.message, "code": exc.code, "tries": row.tries},
                attempt_id=row.id,
                at=now,
            )

    def _permanent(self, attempt: Attempt, exc: ProviderError) -> None:
        now = utcnow()
        actor = f"worker:{self.worker_id}"
        with self.sessions.begin() as session:
            row = session.get(Attempt, attempt.id)
            case = session.get(Case, attempt.case_id)
            if row is None or case is None:
                return
            row.state = AttemptState.FAILED.value
            row.outcome = Outcome.FAILED.value
            row.error_code = str(exc.code) if exc.code else None
            row.error_message = exc.message[:500]
            row.finished_at = now
            row.lease_until = None
            record(
                session,
                case.id,
                "attempt.failed",
                actor,
                {"error": exc.message, "code": exc.code, "permanent": True},
                attempt_id=row.id,
                at=now,
            )
            if row.to_phone == case.phone:
                blocked = block_channels(case, row.channel, exc.code)
                record(
                    session,
                    case.id,
                    "channel.blocked",
                    actor,
                    {"channels": blocked, "code": exc.code},
                    at=now,
                )
            self._review(session, case.id, now)

    @staticmethod
    def _review(session: Session, case_id: int, now: datetime) -> None:
        session.execute(update(Case).where(Case.id == case_id).values(next_review_at=now))


def block_channels(case: Case, channel: str, code: int | None) -> list[str]:
    """Stop what a permanent error rules out for this number: only the failing channel, unless
    the number itself does not exist (then nothing can reach it)."""
    if code in INVALID_NUMBER_CODES:
        case.sms_blocked = case.calls_blocked = True
        return ["sms", "call"]
    if channel == Channel.SMS.value:
        case.sms_blocked = True
        return ["sms"]
    case.calls_blocked = True
    return ["call"]


def caller_number(numbers: Sequence[str], to: str) -> str:
    """Always the same caller number for the same person (people learn to answer it)."""
    return numbers[sum(map(ord, to)) % len(numbers)]
