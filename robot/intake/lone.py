"""PostgreSQL: a request of one warning that opens a case, stored by one statement.

Most requests carry one warning for a number with no open case. Through the general path that
is a transaction of round trips to the server: BEGIN, the look-ups of the external id and of an
open case, the INSERTs of the case, the warning and its two events, the wake-up NOTIFY and COMMIT.
Here all of it is one statement, run in autocommit (a statement is its own transaction): the
data-modifying CTEs insert the case, the warning and the events only if neither look-up found a
row, and NOTIFY the worker for the new case.

It gives the same rows, events and result as :func:`robot.intake.service.accept_warnings`. When
the warning is a duplicate, the statement has written nothing and its answer is final. When the
number has an open case (a merge) it has also written nothing, and the caller stores the warning
through the general path, which looks the case up again: a merge pays one round trip more
than before, for the sake of the far more common new case. A lost race raises IntegrityError and
leaves nothing behind, as any failed statement does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    exists,
    func,
    insert,
    select,
    union_all,
)

from robot.intake.service import (
    WARNING_COLUMNS,
    Accepted,
    NewCase,
    Status,
    opened_data,
    received_data,
    warning_row,
)
from robot.intake.validation import WarningInput
from robot.models import Base, Case, Event, IncomingWarning
from robot.sources import Caller
from robot.timeline import EVENT_COLUMNS, event_row
from robot.wakeup import notify_call

_cases = Base.metadata.tables[Case.__tablename__]
_warnings = Base.metadata.tables[IncomingWarning.__tablename__]
_events = Base.metadata.tables[Event.__tablename__]

# The rows' columns but the ids the statement itself supplies (the new case's; no attempt).
_WARNING_COLUMNS = tuple(name for name in WARNING_COLUMNS if name != "case_id")
_EVENT_COLUMNS = tuple(name for name in EVENT_COLUMNS if name not in ("case_id", "attempt_id"))


def fits(warnings: Sequence[WarningInput]) -> bool:
    """Whether a request can take this path: one warning, without contacts to add."""
    return len(warnings) == 1 and not warnings[0].contacts


@functools.cache
def _statement() -> Select[Any]:
    """Built once (building costs several times executing the cached compiled form).

    Parameters are prefixed (``c_``, ``w_``, ``e0_``): one named like a column would be added
    to that table's VALUES by SQLAlchemy.
    """
    stored = (
        select(_warnings.c.case_id)
        .where(
            _warnings.c.source_id == bindparam("w_source_id"),
            _warnings.c.external_id == bindparam("w_external_id"),
        )
        .cte("stored")
    )
    open_case = (
        select(_cases.c.id).where(_cases.c.open_key == bindparam("c_open_key")).cte("open_case")
    )
    case_columns = list(NewCase.COLUMNS)
    new_case = (
        insert(_cases)
        .from_select(
            case_columns,
            select(
                *(bindparam(f"c_{name}", type_=_cases.c[name].type) for name in case_columns)
            ).where(~exists(stored.select()), ~exists(open_case.select())),
        )
        .returning(_cases.c.id)
        .cte("new_case")
    )
    warning_values = select(
        *(bindparam(f"w_{name}", type_=_warnings.c[name].type) for name in _WARNING_COLUMNS),
        new_case.c.id,
    )
    new_warning = insert(_warnings).from_select([*_WARNING_COLUMNS, "case_id"], warning_values)
    # One INSERT for both events, in order: the timeline orders events of a moment by id.
    # PostgreSQL runs UNION ALL's branches in order and numbers rows as they come (the status
    # callbacks' statement relies on the same); SQL itself does not promise it.
    event_rows = [
        select(
            new_case.c.id,
            *(bindparam(f"e{i}_{name}", type_=_events.c[name].type) for name in _EVENT_COLUMNS),
        )
        for i in range(2)
    ]
    new_events = insert(_events).from_select(["case_id", *_EVENT_COLUMNS], union_all(*event_rows))
    # A plain SELECT in a WITH only runs if the query reads it (data-modifying CTEs always run).
    notify = select(notify_call()).select_from(new_case).cte("woke")
    return select(
        select(stored.c.case_id).scalar_subquery(),
        select(open_case.c.id).scalar_subquery(),
        select(new_case.c.id).scalar_subquery(),
        select(func.count()).select_from(notify).scalar_subquery(),
    ).add_cte(new_warning.cte("new_warning"), new_events.cte("new_events"))


def store_lone(
    conn: Connection, source: Caller, warning: WarningInput, now: datetime
) -> Accepted | None:
    """Store a lone warning on an autocommit connection: its result, or None for a merge.

    None means nothing was written: the number has an open case, and the warning must go the
    general way. Raises IntegrityError if a concurrent request won a race (nothing written).
    """
    case = NewCase(source, warning, now)
    params: dict[str, Any] = {f"c_{name}": value for name, value in case.row().items()}
    # The new case's id comes from the statement itself: the rows' case_id (0 here) is unused.
    stored = warning_row(source, warning, 0, now)
    params.update({f"w_{name}": stored[name] for name in _WARNING_COLUMNS})
    actor = f"source:{source.name}"
    events = (
        event_row(0, "case.opened", actor, opened_data(case), at=now),
        event_row(0, "warning.received", actor, received_data(warning, Status.CREATED), at=now),
    )
    for i, event in enumerate(events):
        params.update({f"e{i}_{name}": event[name] for name in _EVENT_COLUMNS})
    row = conn.execute(_statement(), params).one()
    stored_id: int | None = row[0]
    open_id: int | None = row[1]
    new_id: int | None = row[2]
    if stored_id is not None:
        return Accepted(Status.DUPLICATE, stored_id)
    if new_id is not None:
        return Accepted(Status.CREATED, new_id)
    if open_id is None:  # both look-ups empty, yet nothing inserted: cannot happen
        raise RuntimeError("the lone-warning statement wrote nothing")
    return None
