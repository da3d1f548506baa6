"""Group commit for the intake: requests that arrive while a transaction is writing share the next.

A single-warning request cost five or six times a no-op request, and most of it was per
transaction, not per warning: BEGIN and COMMIT, the look-ups of stored ids and open cases, the
fixed cost of each INSERT, and on SQLite the wait for the write lock. The batch path stores a
warning for a fraction of that. So each web process has one :class:`GroupWriter`. A request puts
its checked warnings in the queue and waits for the process's write turn
(:mod:`robot.groupcommit`). The first to get it (the leader) takes everything queued, stores it
through :func:`accept_warnings` in one transaction, and hands each request its own results. No extra thread and no timer: a request
alone is written at once, as before, and a group only forms while another write is under way.

On PostgreSQL a request of one warning first tries its one statement (:mod:`robot.intake.lone`)
at once, without the lock: PostgreSQL takes concurrent writers, and behind the lock the statement
would wait for another request's write and then be folded into a group, which costs more than
the statements it replaces (a transaction's BEGIN, look-ups, INSERTs and COMMIT, each a round
trip). Only what the statement leaves to the general path (a merge, contacts, a lost race)
queues for a group. Two processes already ran such statements side by side; the races between
them are the statement's own (a unique violation, then the general path).

On SQLite a big batch (more than :data:`GROUP_MAX_WARNINGS`) also takes its turn in the
process: its checks and its write run one batch at a time (:meth:`GroupWriter.batch_turn`).
SQLite has one write lock for every process, and the thread holding it shares its process's
GIL with the sibling threads, which check other batches in pure Python. The holder then ran at
about half speed, so it held the lock for about twice as long, while the other web process
waited for that lock with a core to spare. Four concurrent batches of 1,000 stored 8,606 and
9,672 warnings a second in two bench runs, with a p99 of 1.1 and 1.5 s. With one batch at a time
in each process, one process writes while the other checks: 11,964 and 19,764 a second (p99
375 and 335 ms). PostgreSQL takes concurrent writers and is left as it was: there the turn
measured no better (5,580 and 9,608 a second against 8,394 and 10,265).

Nothing is answered before it is committed: every request's results are set only after its
group's COMMIT. If the group fails, for a lost race (IntegrityError) or anything else, each
request of it is written again on its own, exactly as it would have been without grouping, so one
request's trouble never becomes another's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from robot.db import is_postgres
from robot.groupcommit import GroupQueue
from robot.intake.lone import fits, store_lone
from robot.intake.service import Accepted, Status, accept_each, accept_warnings
from robot.intake.validation import WarningInput
from robot.models import utcnow
from robot.sources import Caller
from robot.wakeup import Waker

Store = Callable[[Connection, Caller, Sequence[WarningInput], datetime], list[Accepted]]

#: Requests with more warnings than this are written on their own: a big batch would keep small
#: requests waiting behind its write (and it gains nothing from company).
GROUP_MAX_WARNINGS = 50
#: PostgreSQL's SQLSTATE for a statement chosen as a deadlock's victim.
DEADLOCK = "40P01"


class _Pending:
    """One request's warnings, waiting to be written; then its results or its error."""

    __slots__ = ("done", "error", "results", "source", "warnings")

    def __init__(self, source: Caller, warnings: Sequence[WarningInput]) -> None:
        self.source = source
        self.warnings = warnings
        self.results: list[Accepted] = []
        self.error: Exception | None = None
        self.done = False


class GroupWriter:
    """Store checked warnings for the threads of one process, a group per transaction."""

    def __init__(self, engine: Engine, waker: Waker) -> None:
        self._engine = engine
        self._postgres = is_postgres(engine)
        self._waker = waker
        self._group: GroupQueue[_Pending] = GroupQueue()
        # SQLite: held by a big batch from its checks to its commit (see the module's docstring).
        self._batch_lock = threading.Lock()

    @property
    def queued(self) -> int:
        """Requests waiting for the next group (diagnostics and tests)."""
        return self._group.queued

    @property
    def turn(self) -> threading.Lock:
        """The process's write turn (see :class:`robot.groupcommit.GroupQueue`)."""
        return self._group.turn

    def batch_turn(self, warnings: int) -> AbstractContextManager[Any]:
        """Hold this around checking and storing a request of ``warnings`` warnings.

        On SQLite a big batch waits here for the process's previous one; anything else passes.
        """
        if self._postgres or warnings <= GROUP_MAX_WARNINGS:
            return nullcontext()
        return self._batch_lock

    def store(self, source: Caller, warnings: Sequence[WarningInput]) -> list[Accepted]:
        """Store the warnings and return once they are committed; raise if they could not be."""
        if not warnings:
            return []
        pending = _Pending(source, warnings)
        if self._postgres and fits(warnings) and self._write_lone(pending, utcnow()):
            # PostgreSQL writes concurrently: a lone warning's one statement needs no turn at
            # the process's lock, and queueing it would make it part of a group, dearer than
            # the statement (see the module's docstring). A merge or a lost race queues below.
            return pending.results
        if len(warnings) > GROUP_MAX_WARNINGS:
            self._write_alone(pending, utcnow())
        else:
            self._group.run(pending, self._write_group)
        if pending.error is not None:
            raise pending.error
        return pending.results

    def _write_group(self, group: list[_Pending]) -> None:
        now = utcnow()
        try:
            if len(group) == 1:
                self._write_alone(group[0], now)
                return
            try:
                self._transaction(group, now, accept_warnings)
            except Exception:
                # A lost race, or a fault of one request: each one on its own, as if alone.
                for pending in group:
                    pending.results = []
                    self._write_alone(pending, now)
        finally:
            for pending in group:
                if not pending.results and pending.error is None:
                    # The leader was interrupted (a BaseException): say so rather than answer
                    # with nothing.
                    pending.error = RuntimeError("the intake writer was interrupted")
                pending.done = True

    def _write_alone(self, pending: _Pending, now: datetime) -> None:
        try:
            try:
                self._transaction([pending], now, accept_warnings)
            except IntegrityError:
                # A concurrent request won a race for a row: again, one warning at a time.
                self._transaction([pending], now, accept_each)
        except Exception as exc:  # handed to the request's own thread, which raises it
            pending.error = exc

    def _write_lone(self, pending: _Pending, now: datetime) -> bool:
        """PostgreSQL, one warning: one statement stores it, unless it merges into a case."""
        try:
            with self._engine.connect() as conn:
                autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
                result = store_lone(autocommit, pending.source, pending.warnings[0], now)
        except IntegrityError:
            return False  # a concurrent request won a race; nothing was written
        except OperationalError as exc:
            # A deadlock with a group or another process's write (they lock rows in another
            # order): PostgreSQL rolled the statement back, so the general path may write it.
            if getattr(exc.orig, "sqlstate", None) != DEADLOCK:
                raise
            return False
        if result is None:
            return False
        pending.results = [result]
        return True

    def _transaction(self, group: list[_Pending], now: datetime, store: Store) -> None:
        """Write every request of the group in one transaction; results are set after COMMIT."""
        results: list[tuple[_Pending, list[Accepted]]] = []
        new_work = False
        with self._engine.begin() as conn:
            # One call per source, over its requests in arrival order: the same results as the
            # requests one after another (accept_warnings treats a later warning exactly as a
            # later request would), for the cost of one.
            for source, members in _by_source(group):
                combined = [w for member in members for w in member.warnings]
                outcomes = iter(store(conn, source, combined, now))
                for member in members:
                    mine = [next(outcomes) for _ in member.warnings]
                    results.append((member, mine))
                    new_work = new_work or any(
                        o.status in (Status.CREATED, Status.MERGED) for o in mine
                    )
            if new_work:
                self._waker.in_transaction(conn)
        if new_work:
            self._waker.after_commit()
        for member, mine in results:
            member.results = mine


def _by_source(group: list[_Pending]) -> list[tuple[Caller, list[_Pending]]]:
    """The group's requests by source, sources and requests in order of arrival."""
    by_id: dict[int, tuple[Caller, list[_Pending]]] = {}
    for pending in group:
        by_id.setdefault(pending.source.id, (pending.source, []))[1].append(pending)
    return list(by_id.values())
