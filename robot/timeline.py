"""The case timeline: append an event; never update or delete one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from robot.models import Event, utcnow


def record(
    session: Session,
    case_id: int | None,
    kind: str,
    actor: str,
    data: Mapping[str, Any] | None = None,
    *,
    attempt_id: int | None = None,
    at: datetime | None = None,
) -> Event:
    """Add one event to a case's timeline (flushed with the caller's transaction)."""
    event = Event(**event_row(case_id, kind, actor, data, attempt_id=attempt_id, at=at))
    session.add(event)
    return event


#: The columns of :func:`event_row`, in its order.
EVENT_COLUMNS = ("case_id", "kind", "actor", "data", "attempt_id", "at")


def event_row(
    case_id: int | None,
    kind: str,
    actor: str,
    data: Mapping[str, Any] | None = None,
    *,
    attempt_id: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The same event as a row, for the hot paths that INSERT it without the ORM."""
    return {
        "case_id": case_id,
        "kind": kind,
        "actor": actor,
        "data": dict(data or {}),
        "attempt_id": attempt_id,
        "at": at or utcnow(),
    }
