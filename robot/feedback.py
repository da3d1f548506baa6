"""Feedback to sources: case state changes queued in a durable outbox, delivered by the worker."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import requests
from sqlalchemy import Connection, Row, Table, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from robot.config import FeedbackSettings
from robot.models import Case, IncomingWarning, OutboxMessage, Source, new_code
from robot.sources import body_signature

log = logging.getLogger(__name__)


#: Who hears about a case: every source that fed it a warning and has a callback URL.
_SOURCES_OF_CASE = (
    select(Source.id, IncomingWarning.external_id)
    .join(IncomingWarning, IncomingWarning.source_id == Source.id)
    .where(IncomingWarning.case_id == bindparam("case_id"), Source.callback_url.is_not(None))
    .order_by(IncomingWarning.id)
)
_INSERT_OUTBOX = insert(cast(Table, OutboxMessage.__table__))


class CaseFacts(Protocol):
    """What a feedback message says of its case (an ORM Case, or a plain copy of its row)."""

    @property
    def id(self) -> int: ...
    @property
    def source_id(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def risk(self) -> str: ...
    @property
    def critical(self) -> bool: ...
    @property
    def disposition(self) -> str | None: ...


def enqueue(
    session: Session,
    case: Case,
    kind: str,
    data: dict[str, Any],
    now: datetime,
    *,
    private: dict[str, Any] | None = None,
) -> None:
    """Queue ``kind`` for every source that fed this case and has a callback URL.

    ``private`` (personal data such as an address) goes only to the source that opened the case:
    a source whose warning merged in later must not learn what another source supplied.
    """
    rows = session.execute(_SOURCES_OF_CASE, {"case_id": case.id}).all()
    for values in outbox_rows(rows, case, kind, data, now, private):
        session.add(OutboxMessage(**values))


def enqueue_core(
    conn: Connection,
    case: CaseFacts,
    kind: str,
    data: dict[str, Any],
    now: datetime,
    *,
    private: dict[str, Any] | None = None,
) -> None:
    """:func:`enqueue` on a bare connection (the worker's reviews without the ORM): the same
    rows, ``case`` being the case as it is after the change."""
    rows = conn.execute(_SOURCES_OF_CASE, {"case_id": case.id}).all()
    values = outbox_rows(rows, case, kind, data, now, private)
    if values:
        conn.execute(_INSERT_OUTBOX, values)


def outbox_rows(
    sources: Iterable[Row[int, str]],
    case: CaseFacts,
    kind: str,
    data: dict[str, Any],
    now: datetime,
    private: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """One outbox row per source, from rows of (source id, external id) in warning order."""
    per_source: dict[int, list[str]] = {}
    for source_id, external_id in sources:
        per_source.setdefault(source_id, []).append(external_id)
    rows = []
    for source_id, external_ids in per_source.items():
        message_id = new_code()
        payload = {
            "id": message_id,
            "type": kind,
            "case_id": case.id,
            "external_ids": external_ids,
            "state": case.state,
            "risk": case.risk,
            "critical": case.critical,
            "disposition": case.disposition,
            "at": now.isoformat(),
            **data,
            **(private if private and source_id == case.source_id else {}),
        }
        rows.append(
            {
                "id": message_id,
                "source_id": source_id,
                "case_id": case.id,
                "kind": kind,
                "payload": payload,
                "created_at": now,
                "next_try_at": now,
            }
        )
    return rows


def _backoff(tries: int, cap: int) -> timedelta:
    return timedelta(seconds=min(cap, 2 ** min(tries, 20)))


def deliver_due(
    sessions: sessionmaker[Session],
    settings: FeedbackSettings,
    worker_id: str,
    now: datetime,
    http: requests.Session,
    limit: int = 50,
) -> int:
    """Deliver due outbox messages; a non-2xx answer or an error schedules a retry."""
    lease = now + timedelta(seconds=settings.request_timeout * 3 + 5)
    with sessions.begin() as session:
        due = session.scalars(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.delivered_at.is_(None),
                OutboxMessage.next_try_at <= now,
                or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now),
            )
            .order_by(OutboxMessage.next_try_at)
            .limit(limit)
        ).all()
        claimed = []
        for message_id in due:
            # Compare-and-swap: only one worker delivers a message at a time.
            result = session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now),
                )
                .values(claimed_by=worker_id, lease_until=lease)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(message_id)
    delivered = 0
    for message_id in claimed:
        delivered += _deliver_one(sessions, settings, message_id, now, http)
    return delivered


def _deliver_one(
    sessions: sessionmaker[Session],
    settings: FeedbackSettings,
    message_id: str,
    now: datetime,
    http: requests.Session,
) -> int:
    with sessions() as session:
        message = session.get(OutboxMessage, message_id)
        source = session.get(Source, message.source_id) if message else None
        if message is None or source is None or not source.callback_url:
            return 0
        body = json.dumps(message.payload, ensure_ascii=False, sort_keys=True).encode()
        url, secret = source.callback_url, source.signing_secret or ""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Robot-Message-Id": message_id,
        "X-Robot-Timestamp": timestamp,
        "X-Robot-Signature": body_signature(secret, timestamp, body),
    }
    error: str | None = None
    try:
        response = http.post(url, data=body, headers=headers, timeout=settings.request_timeout)
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    with sessions.begin() as session:
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        message.lease_until = None
        message.claimed_by = None
        if error is None:
            message.delivered_at = now
            return 1
        message.tries += 1
        message.last_error = error
        message.next_try_at = now + _backoff(message.tries, settings.max_backoff_seconds)
        log.info(
            "feedback %s to source %s failed (%s); retry %d",
            message_id,
            message.source_id,
            error,
            message.tries,
        )
    return 0
