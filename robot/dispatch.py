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
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, sessionmaker

from robot import casework
from robot.config import Settings
from robot.db import is_postgres, read_only_options
from robot.models import (
    Attempt,
    AttemptState,
    Case,
    CaseState,
    Channel,
    Contact,
    Event,
    Outcome,
    PacingState,
    utcnow,
)
from robot.pacing import LATE_TOLERANCE, Pacer
from robot.phones import mask
from robot.providers import (
    CallRequest,
    Provider,
    ProviderError,
    Receipt,
    RemoteState,
    SmsRequest,
)
from robot.telephony.content import Content
from robot.telephony.urls import WebhookUrls
from robot.timeline import event_row, record

log = logging.getLogger(__name__)

#: The number itself is invalid or does not exist: neither SMS nor calls can reach it.
INVALID_NUMBER_CODES = frozenset({21211, 21217, 30005})


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    reclaimed: bool


# --- statements of the placing path ------------------------------------------------------------
#
# Placing runs once per attempt, so its statements are built once, here, and executed on a plain
# connection: building an ORM UPDATE and flushing an Event through a Session cost ~2 ms of Python
# per attempt, several times the database work (item 10 of docs/performance-history.md).

_ATTEMPTS = cast(Table, Attempt.__table__)
_CASES = cast(Table, Case.__table__)
_CONTACTS = cast(Table, Contact.__table__)
_EVENTS = cast(Table, Event.__table__)

#: The attempt's columns that placing needs.
_ATTEMPT_COLUMNS = (
    "id", "case_id", "contact_id", "channel", "purpose", "to_phone", "template", "code",
    "claimed_by", "first_claimed_at", "provider_sid", "provider_status",
)  # fmt: skip
#: (attribute, column) of every mapped column: a detached Case or Contact for the SMS text.
_CASE_ATTRS = [(prop.key, prop.columns[0]) for prop in Case.__mapper__.column_attrs]
_CONTACT_ATTRS = [(prop.key, prop.columns[0]) for prop in Contact.__mapper__.column_attrs]
#: What the stale check reads of the case.
_CASE_CHECK = ("drill", "confirmed_at", "state", "sms_blocked", "calls_blocked", "phone")

#: The attempt, its case and its contact (if any) in one query.
_LOAD_ROWS = select(
    *(_ATTEMPTS.c[name] for name in _ATTEMPT_COLUMNS),
    *(column.label(f"case__{key}") for key, column in _CASE_ATTRS),
    *(column.label(f"contact__{key}") for key, column in _CONTACT_ATTRS),
).select_from(
    _ATTEMPTS.join(_CASES, _CASES.c.id == _ATTEMPTS.c.case_id).outerjoin(
        _CONTACTS, _CONTACTS.c.id == _ATTEMPTS.c.contact_id
    )
)
#: The same for several attempts at once (a placing thread's share of a claimed batch).
_LOAD_MANY = _LOAD_ROWS.where(_ATTEMPTS.c.id.in_(bindparam("ids", expanding=True)))
_LOAD_CASE_CHECK = select(*(_CASES.c[name] for name in _CASE_CHECK)).where(
    _CASES.c.id == bindparam("id")
)

_claimed_now = _ATTEMPTS.c.state == AttemptState.CLAIMED.value
#: Placed, in one statement: the state only if the attempt is still claimed (a fast callback
#: may already have finished it), the receipt only where no callback filled it in first. SET
#: expressions all read the row as it was, so the CASEs see the old state.
_MARK_PLACED = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"))
    .values(
        state=sql_case((_claimed_now, AttemptState.PLACED.value), else_=_ATTEMPTS.c.state),
        lease_until=sql_case((_claimed_now, None), else_=_ATTEMPTS.c.lease_until),
        provider_sid=func.coalesce(_ATTEMPTS.c.provider_sid, bindparam("sid")),
        provider_status=func.coalesce(_ATTEMPTS.c.provider_status, bindparam("status")),
        placed_at=func.coalesce(
            _ATTEMPTS.c.placed_at, bindparam("at", type_=_ATTEMPTS.c.placed_at.type)
        ),
    )
)
_INSERT_EVENT = insert(_EVENTS)

# --- statements of the claiming path -----------------------------------------------------------

_CHANNELS = (Channel.SMS.value, Channel.CALL.value)
#: Calls first: the call is what reaches the person at once (time to dial).
_PLACING_ORDER = (Channel.CALL.value, Channel.SMS.value)
#: What was read of an attempt's case this long ago (seconds) is read again before placing.
#: At 50 ms, a worker behind on its work read the case again for most attempts (1.5 reads a
#: warning at 100 warnings/s on a slow machine): a send and a confirmation can race at any
#: window; a quarter second more of it changes little, and the reads were 5% of the statements.
STALE_AFTER = 0.25
#: A placing thread records what the provider said at least every this many attempts.
RECORD_EVERY = 4
#: How long (seconds) before its pacing slot an attempt's case is read again.
READ_AHEAD = 0.02
_now = bindparam("now", type_=_ATTEMPTS.c.due_at.type)


def _due(channel: Any) -> ColumnElement[bool]:
    """Attempts of ``channel`` a worker may claim at ``:now``."""
    return and_(
        _ATTEMPTS.c.channel == channel,
        or_(
            and_(_ATTEMPTS.c.state == AttemptState.SCHEDULED.value, _ATTEMPTS.c.due_at <= _now),
            # A claim whose worker died: its lease ran out.
            and_(_ATTEMPTS.c.state == AttemptState.CLAIMED.value, _ATTEMPTS.c.lease_until < _now),
        ),
    )


_CLAIM_CANDIDATES = (
    select(_ATTEMPTS.c.id, _ATTEMPTS.c.state, _ATTEMPTS.c.first_claimed_at)
    .where(_due(bindparam("b_channel")))
    .order_by(_ATTEMPTS.c.due_at)
    .limit(bindparam("limit"))
)
_CLAIM_CANDIDATES_LOCKED = _CLAIM_CANDIDATES.with_for_update(skip_locked=True)
_CLAIM = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id.in_(bindparam("ids", expanding=True)), _due(bindparam("b_channel")))
    .values(
        state=AttemptState.CLAIMED.value,
        claimed_by=bindparam("worker"),
        lease_until=bindparam("lease", type_=_ATTEMPTS.c.lease_until.type),
        first_claimed_at=func.coalesce(_ATTEMPTS.c.first_claimed_at, _now),
    )
    .returning(_ATTEMPTS.c.id)
)
_PACING = cast(Table, PacingState.__table__)
#: A voicemail command waits on a live call (the partial index ix_attempts_pending_command
#: makes this a lookup).
COMMAND_WAITS = exists().where(
    _ATTEMPTS.c.pending_command.is_not(None), _ATTEMPTS.c.provider_sid.is_not(None)
)
#: What a pass of the worker looks at first, in one read (before taking the write lock to
#: claim): whether anything is due, per channel; each channel's provider back-off (Unix time);
#: whether a voicemail command waits.
_LOOK = select(
    *(exists().where(_due(channel)).label(channel) for channel in _CHANNELS),
    *(
        select(_PACING.c.backoff_until)
        .where(_PACING.c.channel == channel)
        .scalar_subquery()
        .label(f"backoff_{channel}")
        for channel in _CHANNELS
    ),
    COMMAND_WAITS.label("command"),
)
_LOCK_CALL_PACING = (
    select(PacingState.__table__.c.channel)
    .where(PacingState.__table__.c.channel == Channel.CALL.value)
    .with_for_update()
)
_BUSY_CALLS = (
    select(func.count())
    .select_from(_ATTEMPTS)
    .where(
        _ATTEMPTS.c.channel == Channel.CALL.value,
        _ATTEMPTS.c.state.in_((AttemptState.CLAIMED.value, AttemptState.PLACED.value)),
    )
)


@dataclass(frozen=True, slots=True)
class Look:
    """What :meth:`Dispatcher.look` found."""

    ready: tuple[str, ...]  #: channels to claim, in placing order
    command: bool  #: a voicemail command waits on a live call


@dataclass(frozen=True, slots=True)
class _Target:
    """The attempt being placed, as read before placing it."""

    id: int
    case_id: int
    channel: str
    purpose: str
    to_phone: str
    first_claimed_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Placed:
    """An attempt the provider took, not yet recorded."""

    attempt: _Target
    receipt: Receipt
    at: datetime
    adopted: bool = False

    @classmethod
    def found(cls, attempt: _Target, call: RemoteState) -> _Placed:
        """A call the provider already had for the attempt, adopted instead of placed again."""
        return cls(attempt, Receipt(call.sid, call.status), utcnow(), adopted=True)


@dataclass(frozen=True, slots=True)
class _CaseCheck:
    """What decides whether an attempt is still to be placed (see ``_stale_reason``)."""

    drill: bool
    confirmed_at: datetime | None
    state: str
    sms_blocked: bool
    calls_blocked: bool
    phone: str


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
        self._engine: Engine = sessions.kw["bind"]
        #: Connections whose transactions only read (no write lock on SQLite; see read_session).
        self._read_engine = self._engine.execution_options(**read_only_options(self._engine))
        self._postgres = is_postgres(self._engine)
        self._threads = threads
        #: The longest a send may take: the provider's timeout and a second for the rest, but at
        #: most half the lease (a lease shorter than that, as in tests, leaves no more room).
        self._send_time = min(
            settings.twilio.request_timeout + 1.0, settings.worker.lease_seconds / 2
        )
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="place")
        self._strikes = False

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # --- claiming -------------------------------------------------------------------------------

    def claim(self, channel: str, limit: int, now: datetime) -> list[Claimed]:
        """Take up to ``limit`` due attempts of one channel under a lease."""
        return self.claim_channels((channel,), limit, now)

    def claim_channels(self, channels: Sequence[str], limit: int, now: datetime) -> list[Claimed]:
        """Take up to ``limit`` due attempts of each channel under a lease, in one transaction
        (one wait for SQLite's write lock), in the order of ``channels``."""
        lease = now + timedelta(seconds=self.settings.worker.lease_seconds)
        claimed: list[Claimed] = []
        with self._engine.begin() as conn:
            for channel in channels:
                claimed += self._claim(conn, channel, limit, now, lease)
        return claimed

    def _claim(
        self, conn: Connection, channel: str, limit: int, now: datetime, lease: datetime
    ) -> list[Claimed]:
        if channel == Channel.CALL.value:
            limit = min(limit, self._free_call_lines(conn))
        if limit <= 0:
            return []
        query = _CLAIM_CANDIDATES_LOCKED if self._postgres else _CLAIM_CANDIDATES
        candidates = conn.execute(query, {"b_channel": channel, "now": now, "limit": limit}).all()
        if not candidates:
            return []
        # The WHERE repeats the due condition: on SQLite this UPDATE is the compare-and-swap.
        won: set[int] = set(
            conn.execute(
                _CLAIM,
                {
                    "ids": [row.id for row in candidates],
                    "b_channel": channel,
                    "now": now,
                    "worker": self.worker_id,
                    "lease": lease,
                },
            ).scalars()
        )
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

    def _free_call_lines(self, conn: Connection) -> int:
        cap = self.settings.worker.max_concurrent_calls
        if cap <= 0:
            return 10**9
        if self._postgres:
            # Lock the pacing row so two workers cannot both see the same free line (SQLite
            # needs nothing: BEGIN IMMEDIATE already serialises writers).
            conn.execute(_LOCK_CALL_PACING)
        busy = conn.scalar(_BUSY_CALLS)
        return cap - int(busy or 0)

    def look(self, conn: Connection, now: datetime) -> Look:
        """The channels with a due attempt and no provider back-off (in placing order), and
        whether a command waits: one statement, on the caller's (read-only) connection.

        An idle pass of the worker used to open a write transaction per channel (SQLite's
        write lock included) to find nothing to claim; this read takes no lock.
        """
        row = conn.execute(_LOOK, {"now": now}).one()._mapping
        clock = time.time()
        ready = tuple(
            c for c in _PLACING_ORDER if row[c] and float(row[f"backoff_{c}"] or 0.0) <= clock
        )
        return Look(ready, bool(row["command"]))

    # --- placing --------------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None, ready: Sequence[str] | None = None) -> int:
        """Claim and place what is due now; returns how many attempts were handed over.

        Both channels are claimed together and placed side by side, calls first: a new case's
        call no longer waits for every SMS of the batch before it (time to dial). ``ready``:
        the channels a :meth:`look` just found ready (else they are looked up here).
        """
        now = now or utcnow()
        if ready is None:
            with self._read_engine.connect() as conn:
                ready = self.look(conn, now).ready
        channels = [c for c in _PLACING_ORDER if c in ready]
        if not channels:
            return 0
        # The leases end lease_seconds after the claim; this clock reading comes before it.
        deadline = time.time() + self.settings.worker.lease_seconds
        claimed = self.claim_channels(channels, self.settings.worker.batch_size, now)
        if not claimed:
            return 0
        # One task per thread, each with every n-th attempt (calls stay at the head of each
        # share): a future and a thread handoff per attempt cost more than a share's one read.
        # Two attempts are not put in one share to save a read: with calls paced, an SMS would
        # wait for the call's slot, and a second call for the first call's create.
        n = min(self._threads, len(claimed))
        shares = [claimed[i::n] for i in range(n)]
        others = [self._pool.submit(self._place_share, share, deadline) for share in shares[1:]]
        # This thread places the first share itself (a lone new call starts at once).
        placed = self._place_share(shares[0], deadline)
        return placed + sum(future.result() for future in others)

    def place(self, claimed: Claimed) -> int:
        """Place one attempt claimed just now."""
        return self._place_share([claimed], time.time() + self.settings.worker.lease_seconds)

    def _place_share(self, share: Sequence[Claimed], deadline: float) -> int:
        """Place claimed attempts one after the other: their rows read in one query, what the
        provider said written a few at a time (one transaction, one wait for SQLite's write
        lock, for up to RECORD_EVERY attempts)."""
        try:
            with self._read_engine.connect() as conn:
                ids = [c.id for c in share]
                rows = {row.id: row for row in conn.execute(_LOAD_MANY, {"ids": ids})}
        except Exception:  # the leases expire and another pass takes them
            log.exception("reading attempts %s failed", [c.id for c in share])
            return 0
        loaded = time.time()
        placed = 0
        done: list[_Placed] = []
        for claimed in share:
            try:
                self._place(claimed, rows.get(claimed.id), loaded, deadline, done)
            except Exception:  # one bad attempt must not stop the others; its lease will expire
                log.exception("placing attempt %s failed unexpectedly", claimed.id)
            # Paced, the next attempt may wait for its slot: record what was placed first.
            if len(done) >= RECORD_EVERY or (done and self.pacer.paced(claimed.channel)):
                placed += self._record(done)
                done = []
        return placed + self._record(done)

    def _place(
        self,
        claimed: Claimed,
        row: Row[Any] | None,
        loaded: float,
        deadline: float,
        done: list[_Placed],
    ) -> None:
        """Place one attempt; what the provider said goes to ``done``, to be recorded.

        ``deadline``: when the claim's lease may run out (time.time()). Past it, another worker
        may have taken the attempt, so it is not sent that close to it.
        """
        if row is None or row.claimed_by != self.worker_id:
            return
        attempt = _Target(
            row.id, row.case_id, row.channel, row.purpose, row.to_phone, row.first_claimed_at
        )
        values = row._mapping
        stale = self._stale_reason(
            attempt, _CaseCheck(*(values[f"case__{n}"] for n in _CASE_CHECK))
        )
        if stale:
            self._cancel(claimed.id, stale)
            return
        request = self._request(row)
        if claimed.reclaimed and row.provider_sid:
            # A callback came for it: the provider took it, and the first claimant died (or
            # failed to record it) before it could write that down. Adopt it (an SMS too).
            receipt = Receipt(row.provider_sid, row.provider_status or "queued")
            done.append(_Placed(attempt, receipt, utcnow(), adopted=True))
            return
        if claimed.reclaimed and attempt.channel == Channel.CALL.value and attempt.first_claimed_at:
            # The first claimant died mid-request: the call may exist already. Adopt it.
            try:
                existing = self.provider.find_call(attempt.to_phone, attempt.first_claimed_at)
            except ProviderError as exc:
                self._transient(attempt, exc)
                return
            if existing is not None:
                done.append(_Placed.found(attempt, existing))
                return
        horizon = self.settings.worker.lease_seconds / 2
        for _ in range(10):
            slot = self.pacer.take_slot(attempt.channel, horizon=horizon)
            if slot is None:
                self._release(attempt.id, "pacing")
                return
            # The case is read again a little before the slot, not after it: a read between
            # the slot and the send made sends late and let them bunch (23 in one second at a
            # limit of 20).
            ahead = slot - READ_AHEAD - time.time()
            if ahead > 0:
                time.sleep(ahead)
            if time.time() - loaded > STALE_AFTER:
                # The row was read a while ago (a wait for a slot, the attempts placed before
                # this one): the person may have confirmed (or the case closed) meanwhile.
                stale = self._still_needed(attempt)
                if stale:
                    self._cancel(attempt.id, stale)
                    return
                loaded = time.time()
            delay = slot - time.time()
            if delay > 0:
                time.sleep(delay)
            if not self.pacer.paced(attempt.channel) or time.time() - slot <= LATE_TOLERANCE:
                break
            # Woke too late for this slot: sending now could crowd the next one. Take another.
        if time.time() + self._send_time > deadline:
            # Its lease may end before the provider answers: another worker could take the
            # attempt and send it again. Hand it back unsent instead.
            self._release(attempt.id, "lease ending")
            return
        try:
            if isinstance(request, CallRequest):
                receipt = self.provider.place_call(request)
            else:
                receipt = self.provider.send_sms(request)
        except ProviderError as exc:
            if exc.rate_limited:
                self.pacer.rate_limited(attempt.channel)
                self._strikes = True
            existing = self._created_after_all(attempt, exc)
            if existing is not None:
                done.append(_Placed.found(attempt, existing))
                return
            if exc.permanent:
                self._permanent(attempt, exc)
            else:
                self._transient(attempt, exc)
            return
        # Recorded first: what follows writes to the database and may fail.
        done.append(_Placed(attempt, receipt, utcnow()))
        if self._strikes:
            self._strikes = False
            self.pacer.succeeded(attempt.channel)

    def _created_after_all(self, attempt: _Target, exc: ProviderError) -> RemoteState | None:
        """The call a create that got no clear answer (a timeout, a dropped connection, a 5xx)
        made anyway.

        No status callback comes before the call is answered or ends, so without this the
        attempt would be retried while the call rings (and failed, on its last try).
        """
        unclear = exc.status is None or exc.status >= 500
        if exc.permanent or not unclear or attempt.channel != Channel.CALL.value:
            return None
        try:
            return self.provider.find_call(
                attempt.to_phone, attempt.first_claimed_at or utcnow() - timedelta(seconds=5)
            )
        except ProviderError:
            return None

    def _still_needed(self, attempt: _Target) -> str | None:
        """The stale reason, read afresh; None when the attempt should still go out."""
        with self._read_engine.connect() as conn:
            row = conn.execute(_LOAD_CASE_CHECK, {"id": attempt.case_id}).first()
        return self._stale_reason(attempt, _CaseCheck(*row)) if row is not None else "case gone"

    def _stale_reason(self, attempt: _Target, case: _CaseCheck) -> str | None:
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

    def _request(self, row: Row[Any]) -> CallRequest | SmsRequest:
        """The provider request for a row of ``_LOAD_ROWS``."""
        twilio = self.settings.twilio
        values = row._mapping
        phone = values["case__phone"]
        if row.channel == Channel.SMS.value:
            # The text needs the case (and the contact): detached copies of the rows just read.
            case = Case(**{key: values[f"case__{key}"] for key, _ in _CASE_ATTRS})
            contact = (
                Contact(**{key: values[f"contact__{key}"] for key, _ in _CONTACT_ATTRS})
                if values["contact_id"] is not None
                else None
            )
            body = self.content.text(row.template, case, contact).text
            return SmsRequest(
                to=row.to_phone,
                body=body,
                status_callback=self.urls.sms_status(row.code),
                from_=None
                if twilio.messaging_service_sid
                else caller_number(twilio.from_numbers, phone),
                messaging_service_sid=twilio.messaging_service_sid or None,
                validity_seconds=twilio.sms_validity_seconds,
            )
        return CallRequest(
            to=row.to_phone,
            from_=caller_number(twilio.from_numbers, phone),
            twiml_url=self.urls.call_twiml(row.code),
            status_callback=self.urls.call_status(row.code),
            amd_callback=self.urls.call_amd(row.code)
            if twilio.answering_machine_detection
            else None,
            ring_timeout=twilio.ring_timeout,
        )

    # --- recording ------------------------------------------------------------------------------

    def _record(self, done: Sequence[_Placed]) -> int:
        """Mark placed attempts placed, each with its event, in one transaction; how many.

        If this fails twice, the attempts stay claimed: when their leases run out the next
        claimant adopts those a callback or the provider shows were taken (as after a worker
        that died here).
        """
        if not done:
            return 0
        actor = f"worker:{self.worker_id}"
        for tries_left in (1, 0):
            try:
                self._write_placed(done, actor)
                return len(done)
            except Exception:
                # Left claimed, the attempts would wait for their leases to run out, and an SMS
                # without a callback yet would then be sent again: try once more first.
                if not tries_left:
                    log.exception(
                        "recording placed attempts %s failed", [p.attempt.id for p in done]
                    )
                    return 0
                time.sleep(0.1)
        return 0

    def _write_placed(self, done: Sequence[_Placed], actor: str) -> None:
        """Mark the attempts placed, each with its event, in one transaction."""
        with self._engine.begin() as conn:
            conn.execute(
                _MARK_PLACED,
                [
                    {"attempt_id": p.attempt.id, "sid": p.receipt.sid,
                     "status": p.receipt.status, "at": p.at}
                    for p in done
                ],
            )  # fmt: skip
            events = [
                event_row(
                    p.attempt.case_id,
                    "attempt.placed",
                    actor,
                    {
                        "channel": p.attempt.channel,
                        "purpose": p.attempt.purpose,
                        "to": mask(p.attempt.to_phone),
                        "sid": p.receipt.sid,
                        "adopted": p.adopted,
                    },
                    attempt_id=p.attempt.id,
                    at=p.at,
                )
                for p in done
            ]
            conn.execute(_INSERT_EVENT, events)

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

    def _transient(self, attempt: _Target, exc: ProviderError) -> None:
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

    def _permanent(self, attempt: _Target, exc: ProviderError) -> None:
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
