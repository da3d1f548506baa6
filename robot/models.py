"""The tables: sources, warnings, cases, contacts, attempts, events, outbox, staff, home visits.

Warnings are stored verbatim and never edited; events are append-only. Every other row changes
through the intake, the worker, the webhooks or the dashboard, and each change leaves an event.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

_UNSET = object()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends (SQLite has no time zones; it stores naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        process = super().bind_processor(dialect)
        if process is None:
            return None
        # A write stamps its rows with one ``now``: a batch of 1,000 warnings bound the same
        # datetime 6,000 times, each converted and formatted anew (a tenth of the batch's CPU,
        # inside SQLite's write lock). One entry per column, replaced whole (a tuple), so
        # threads never see a value paired with another's result; ``is`` on a value it still
        # holds cannot match a different object.
        last: list[tuple[Any, Any]] = [(_UNSET, None)]

        def cached(value: Any) -> Any:
            seen, result = last[0]
            if seen is value:
                return result
            result = process(value)
            last[0] = (value, result)
            return result

        return cached


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_code() -> str:
    """An unguessable id for webhook URLs and outbox messages."""
    return secrets.token_hex(16)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}  # noqa: RUF012


# --- enums --------------------------------------------------------------------------------------


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return ("low", "medium", "high").index(self.value)


class FraudType(StrEnum):
    FAKE_INVESTMENT = "fake_investment"
    TASK_REBATE = "task_rebate"  #: order-brushing "part-time jobs"
    FAKE_LOAN = "fake_loan"
    FAKE_CUSTOMER_SERVICE = "fake_customer_service"
    FAKE_POLICE = "fake_police"
    FAKE_CREDIT = "fake_credit"
    FAKE_BOSS = "fake_boss"  #: a boss or acquaintance asking for money
    GAME_TRADING = "game_trading"
    ROMANCE = "romance"  #: "pig butchering"
    FAKE_SHOPPING = "fake_shopping"
    OTHER = "other"


class Trigger(StrEnum):
    FRAUD_CALL = "fraud_call"  #: took a call from a known fraud number
    FRAUD_SITE = "fraud_site"  #: opened a known fraud site
    ABNORMAL_TRANSFER = "abnormal_transfer"
    APP_INSTALL = "app_install"
    OTHER = "other"


class CaseState(StrEnum):
    OPEN = "open"  #: the robot is working the case (SMS, calls, retries)
    ESCALATED = "escalated"  #: in the human queue; the robot may still be retrying
    CLOSED = "closed"  #: done, with a disposition; follow-ups may still be scheduled


class Disposition(StrEnum):
    CONFIRMED = "confirmed"  #: pressed 1 / replied to confirm: warned and understood
    DISSUADED = "dissuaded"  #: reached by staff and dissuaded
    STILL_BELIEVES = "still_believes"  #: reached but still believes the fraudster (not a success)
    ALREADY_PAID = "already_paid"
    WRONG_NUMBER = "wrong_number"
    UNREACHABLE = "unreachable"
    FALSE_ALARM = "false_alarm"
    WARNED = "warned"  #: low risk: the warning SMS was delivered, nothing more was needed


class Channel(StrEnum):
    SMS = "sms"
    CALL = "call"


class Purpose(StrEnum):
    WARNING = "warning"  #: the first SMS or call to the person
    RETRY = "retry"  #: a later robot call to the person
    CONTACT_NOTICE = "contact_notice"  #: to a relative, employer or guard
    FOLLOW_UP = "follow_up"  #: after the case closed
    STAFF_SMS = "staff_sms"  #: an SMS an operator chose to send
    STAFF_BRIDGE = "staff_bridge"  #: calls the operator, then connects the person


class AttemptState(StrEnum):
    SCHEDULED = "scheduled"  #: waiting for due_at
    CLAIMED = "claimed"  #: a worker holds it under a lease and is talking to the provider
    PLACED = "placed"  #: the provider accepted it; outcome comes by callback
    FINISHED = "finished"  #: the provider reported a final status
    CANCELED = "canceled"  #: no longer needed (confirmed, closed, superseded)
    FAILED = "failed"  #: could not be placed (permanent error, retries exhausted)


class Outcome(StrEnum):
    CONFIRMED = "confirmed"  #: answered and pressed 1
    ANSWERED = "answered"  #: answered without confirming
    HUNG_UP = "hung_up"  #: answered and hung up early
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    FAILED = "failed"
    DELIVERED = "delivered"  #: SMS
    UNDELIVERED = "undelivered"  #: SMS


class Role(StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# --- tables -------------------------------------------------------------------------------------


class Source(Base):
    """An upstream feed that posts warnings; authenticates with an API key stored hashed."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    #: Shared secret for signed intake bodies and signed feedback; None when not enabled.
    signing_secret: Mapped[str | None] = mapped_column(String(128))
    require_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Case(Base):
    """One person at risk. Warnings for a number with an open case join that case."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    phone: Mapped[str] = mapped_column(String(20), index=True)
    #: The phone number while the case is open, NULL once closed: a unique index on it makes
    #: "one open case per number" hold even when two warnings race.
    open_key: Mapped[str | None] = mapped_column(String(20), unique=True)
    region: Mapped[str | None] = mapped_column(String(2))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str | None] = mapped_column(String(20))
    area: Mapped[str | None] = mapped_column(String(100), index=True)
    address: Mapped[str | None] = mapped_column(String(500))
    risk: Mapped[str] = mapped_column(String(10))
    fraud_type: Mapped[str] = mapped_column(String(40))
    trigger: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20), default=CaseState.OPEN, index=True)
    #: Already paid, or asked for an officer: goes to the head of the human queue.
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    contacts_notified_at: Mapped[datetime | None]
    home_visit_requested_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    disposition: Mapped[str | None] = mapped_column(String(30))
    disposition_note: Mapped[str | None] = mapped_column(Text)
    #: Permanent provider errors stop a channel for this number (invalid, landline, opted out).
    sms_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    calls_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    claim_expires_at: Mapped[datetime | None]
    #: Next time the policy must look at this case even if no callback arrives.
    next_review_at: Mapped[datetime | None] = mapped_column(index=True)
    #: A practice case posted by the drill mode: never reaches a real person.
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Bumped on every change; lets the policy run compare-and-swap on the case.
    version: Mapped[int] = mapped_column(Integer, default=0)

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="case", order_by="Contact.id", lazy="raise_on_sql"
    )


class IncomingWarning(Base):
    """A warning exactly as the source sent it. Never edited."""

    __tablename__ = "warnings"
    __table_args__ = (UniqueConstraint("source_id", "external_id", name="uq_warnings_source_ext"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    external_id: Mapped[str] = mapped_column(String(200))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    """A relative, employer or volunteer guard who may reach the person."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    phone: Mapped[str] = mapped_column(String(20))
    relation: Mapped[str] = mapped_column(String(40))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="contacts", lazy="raise_on_sql")


class Attempt(Base):
    """One outbound SMS or call. The attempts table is the worker's schedule."""

    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_due", "state", "due_at"),
        # Only live calls a machine answered carry a command: a tiny index the worker polls.
        Index(
            "ix_attempts_pending_command",
            "pending_command",
            sqlite_where=text("pending_command IS NOT NULL"),
            postgresql_where=text("pending_command IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True, default=new_code)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    channel: Mapped[str] = mapped_column(String(10))
    purpose: Mapped[str] = mapped_column(String(20))
    to_phone: Mapped[str] = mapped_column(String(20), index=True)
    template: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(12), default=AttemptState.SCHEDULED)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    #: When a worker first took this attempt; a later claim (the first worker died) checks
    #: the provider for a call made since then before placing another.
    first_claimed_at: Mapped[datetime | None]
    #: Work for the worker on a live call (e.g. "voicemail": leave the voicemail message).
    pending_command: Mapped[str | None] = mapped_column(String(20))
    #: How many times the provider answered with a transient error for this attempt.
    tries: Mapped[int] = mapped_column(Integer, default=0)
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    provider_status: Mapped[str | None] = mapped_column(String(20))
    #: Highest status-callback SequenceNumber applied; older callbacks change nothing.
    last_sequence: Mapped[int] = mapped_column(Integer, default=-1)
    outcome: Mapped[str | None] = mapped_column(String(20))
    answered_by: Mapped[str | None] = mapped_column(String(30))
    digits: Mapped[str | None] = mapped_column(String(40))
    error_code: Mapped[str | None] = mapped_column(String(10))
    error_message: Mapped[str | None] = mapped_column(String(500))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    placed_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Event(Base):
    """The append-only timeline of a case: who or what did what, and when."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    #: "source:NAME", "robot", "worker:ID", "provider", "staff:USERNAME", "system".
    actor: Mapped[str] = mapped_column(String(120))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id"))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxMessage(Base):
    """Feedback to a source, delivered until the source acknowledges it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "delivered_at", "next_try_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_code)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_try_at: Mapped[datetime] = mapped_column(default=utcnow)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]


class HomeVisit(Base):
    """A request for police to visit: what the officer needs to find and help the person."""

    __tablename__ = "home_visits"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(120))
    area: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(500))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default="requested")


class Staff(Base):
    """A call-center operator, supervisor or admin."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20), default=Role.OPERATOR)
    #: Operators see only their area's cases; None means every area.
    area: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(10), default="zh-CN")
    phone: Mapped[str | None] = mapped_column(String(20))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Callback(Base):
    """A human callback a member of staff scheduled, for themselves or for anyone."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    due_at: Mapped[datetime] = mapped_column(index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    note: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None]


class PacingState(Base):
    """Provider pacing shared by every worker, one row per channel."""

    __tablename__ = "pacing"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: Unix time of the next free send slot (slots are 1/rate apart: no burst above the rate).
    next_slot: Mapped[float] = mapped_column(Float, default=0.0)
    #: Unix time before which nobody sends on this channel (set after a 429).
    backoff_until: Mapped[float] = mapped_column(Float, default=0.0)
    #: Consecutive 429s, for the exponential slow-down.
    strikes: Mapped[int] = mapped_column(Integer, default=0)
