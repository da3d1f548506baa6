"""Provider pacing shared by every worker: send slots per channel, and a slow-down after a 429.

Slots are spaced 1/rate seconds apart (a zero-burst GCRA), so no one-second window ever holds
more than the rate, whichever worker takes them. The state lives in the database.
"""

from __future__ import annotations

import time
from typing import cast

from sqlalchemy import Engine, Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from robot.models import PacingState

#: Slots are this much further apart than 1/rate. A slot is kept to the millisecond, but the
#: request reaches the provider a few ms early or late (thread wake-up, connection, GIL); with
#: exact spacing, rate + 1 calls landed in one second. 4% leaves 40 ms a second for it: up to
#: LATE_TOLERANCE of a late send, the rest for the trip. At 3%, with 15 ms of it for a late
#: send, the bench once saw rate + 1 calls arrive within 999.8 ms (the trip varied by more
#: than the 15 ms left to it), and its least slack in six other runs was 3 to 27 ms.
JITTER_MARGIN = 0.04
#: A sender that wakes up later than this after its slot (a busy CPU, a stalled thread) takes
#: a new slot instead: sending late and then on time would squeeze two calls closer together
#: than the margin allows for. Seconds: a quarter of the margin's 40 ms a second.
LATE_TOLERANCE = JITTER_MARGIN / 4

# Built once: every placed attempt takes a slot (every pass of the worker reads the back-offs:
# robot/dispatch.py, Dispatcher.look).
_PACING = cast(Table, PacingState.__table__)
#: PostgreSQL: the row is locked, so workers taking slots at once queue for it. With the
#: compare-and-swap alone, two workers taking slots in a tight loop could each lose the swap
#: to the other over and over, and one of them ran out of its 20 tries (a test saw it once in
#: about 20 runs). SQLite has one writer at a time anyway (BEGIN IMMEDIATE).
_READ_SLOT = (
    select(_PACING.c.next_slot, _PACING.c.backoff_until)
    .where(_PACING.c.channel == bindparam("b_channel"))
    .with_for_update()
)
#: Compare-and-swap on the slot that was read (kept as a guard: the lock makes it succeed).
_TAKE_SLOT = (
    update(_PACING)
    .where(_PACING.c.channel == bindparam("b_channel"), _PACING.c.next_slot == bindparam("read"))
    .values(next_slot=bindparam("next"))
)


class Pacer:
    def __init__(self, sessions: sessionmaker[Session], rates: dict[str, float]) -> None:
        self._sessions = sessions
        self._rates = rates
        self._engine: Engine = sessions.kw["bind"]

    def ensure_rows(self) -> None:
        for channel in self._rates:
            try:
                with self._sessions.begin() as session:
                    if session.get(PacingState, channel) is None:
                        session.add(
                            PacingState(
                                channel=channel, next_slot=0.0, backoff_until=0.0, strikes=0
                            )
                        )
            except IntegrityError:
                pass  # another worker created it

    def paced(self, channel: str) -> bool:
        return self._rates.get(channel, 0.0) > 0

    def take_slot(self, channel: str, horizon: float = 1.0) -> float | None:
        """Reserve the next send slot; returns its Unix time, or None if it is beyond ``horizon``."""
        rate = self._rates.get(channel, 0.0)
        if rate <= 0:
            return time.time()
        spacing = (1.0 + JITTER_MARGIN) / rate
        for _ in range(20):
            with self._engine.begin() as conn:
                row = conn.execute(_READ_SLOT, {"b_channel": channel}).one()
                # The clock is read once the row is ours to read (SQLite's BEGIN IMMEDIATE may
                # have waited for another worker): a time read before the wait would hand out
                # slots already in the past, and the threads holding them would all send at once.
                now = time.time()
                slot = max(row.next_slot, now, row.backoff_until)
                if slot - now > horizon:
                    return None
                # Compare-and-swap on the slot we read: a concurrent worker makes us retry.
                result = conn.execute(
                    _TAKE_SLOT,
                    {"b_channel": channel, "read": row.next_slot, "next": slot + spacing},
                )
                if result.rowcount == 1:
                    return float(slot)
        return None

    def rate_limited(self, channel: str) -> float:
        """A 429: every worker holds this channel back, longer after each strike in a row."""
        with self._sessions.begin() as session:
            row = session.get(PacingState, channel, with_for_update=True)
            if row is None:
                return 0.0
            row.strikes = min(row.strikes + 1, 6)
            row.backoff_until = max(row.backoff_until, time.time() + 0.25 * 2**row.strikes)
            return row.backoff_until

    def succeeded(self, channel: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(PacingState)
                .where(PacingState.channel == channel, PacingState.strikes > 0)
                .values(strikes=0)
            )
