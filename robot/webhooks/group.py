"""SQLite: status callbacks that arrive while one is being written share the next transaction.

SQLite has one write lock for every process, and a status callback always writes. Taking the
lock (BEGIN IMMEDIATE, polled), committing and handing it over cost more than the callback's
own read and writes. So each web process has one :class:`StatusGroup`: a callback checks its
signature and parses its form on its own thread, then queues its write for the process's next
group (:mod:`robot.groupcommit`). The leader applies the group's writes, in arrival order, in
one transaction, and hands each callback its own result.

Each callback reads its attempt's row inside the shared transaction, so a later callback of the
same attempt sees what an earlier one of the group wrote, exactly as if they had been written
one after another. Nothing is answered before it is committed. If the group's transaction fails
for any reason, each of its callbacks is written again in a transaction of its own, so one
callback's trouble never becomes another's.

PostgreSQL takes concurrent writers and writes a callback in one autocommitted statement: it
does not use this.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from sqlalchemy import Connection, Engine

from robot.groupcommit import GroupQueue

log = logging.getLogger(__name__)

#: One callback's write: applied on the group's connection, it says whether to wake the worker.
Write = Callable[[Connection], bool]


class _Pending:
    """One callback's write, waiting for its turn; then its result or its error."""

    __slots__ = ("done", "error", "wake", "write")

    def __init__(self, write: Write) -> None:
        self.write = write
        self.wake: bool | None = None
        self.error: Exception | None = None
        self.done = False


class StatusGroup:
    """Write the status callbacks of one process's threads, a group per transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._group: GroupQueue[_Pending] = GroupQueue()

    @property
    def queued(self) -> int:
        """Writes waiting for the next transaction (diagnostics and tests)."""
        return self._group.queued

    def apply(self, write: Write) -> bool:
        """Run ``write`` in a transaction, perhaps shared; return once it is committed."""
        pending = _Pending(write)
        self._group.run(pending, self._write_group)
        if pending.error is not None:
            raise pending.error
        if pending.wake is None:  # not an assert: answering "written" here would lose it
            raise RuntimeError("a status callback was left unwritten")
        return pending.wake

    def _write_group(self, group: list[_Pending]) -> None:
        try:
            if len(group) > 1:
                try:
                    self._transaction(group)
                    return
                except _NoTransaction as exc:
                    # The write lock could not be had (busy past its timeout): one at a time
                    # would wait as long again each, so every callback gets the error now.
                    for pending in group:
                        pending.error = exc.reason
                    return
                except Exception:
                    # One callback's fault, or a lost race: each one on its own, below.
                    log.warning(
                        "a group of %d status callbacks failed; writing each on its own",
                        len(group),
                        exc_info=True,
                    )
            for pending in group:
                try:
                    self._transaction([pending])
                except _NoTransaction as exc:
                    pending.error = exc.reason
                except Exception as exc:  # raised in the callback's own thread
                    pending.error = exc
        finally:
            for pending in group:
                if pending.error is None and pending.wake is None:
                    # The leader was interrupted (a BaseException): say so, not "not ours".
                    pending.error = RuntimeError("the status writer was interrupted")
                pending.done = True

    def _transaction(self, group: list[_Pending]) -> None:
        """Every write of ``group`` in one transaction; results are set only after COMMIT."""
        results: list[bool] = []
        with contextlib.ExitStack() as stack:
            try:
                conn = stack.enter_context(self._engine.begin())
            except Exception as exc:
                raise _NoTransaction(exc) from exc
            for pending in group:
                results.append(pending.write(conn))
        for pending, wake in zip(group, results, strict=True):
            pending.wake = wake


class _NoTransaction(Exception):
    """The transaction could not begin (SQLite's write lock stayed busy, say)."""

    def __init__(self, reason: Exception) -> None:
        super().__init__(str(reason))
        self.reason = reason
