"""Group commit between the threads of one process: the first to get the turn writes for all.

Used where most of a small write's cost is per transaction (on SQLite: taking the one write
lock, committing, handing the lock over): the intake's single warnings and the status
callbacks. A thread queues its work and waits for the process's write turn. The first to get it
(the leader) takes everything queued and writes it in one go; the others find their work done
when their turn comes, or lead the next group. No extra thread and no timer: work that arrives
alone is written at once, and a group only forms while another write is under way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Queued(Protocol):
    """One thread's queued work; the leader sets ``done`` once it is written (or has failed)."""

    done: bool


P = TypeVar("P", bound=Queued)


class GroupQueue(Generic[P]):
    """The queue and the write turn of one process's writer."""

    def __init__(self) -> None:
        self._queue: list[P] = []
        self._queue_lock = threading.Lock()
        #: The write turn: held by the leader for the whole write; the others wait on it, and
        #: find their work done (or become the next leader) when they get it. Tests hold it to
        #: stand for a write in progress.
        self.turn = threading.Lock()

    @property
    def queued(self) -> int:
        """Work waiting for the next group (diagnostics and tests)."""
        return len(self._queue)

    def run(self, pending: P, write_group: Callable[[list[P]], None]) -> None:
        """Queue ``pending``; return once it is done, having led a group or not.

        ``write_group`` must mark every member done, whatever happens to the write.
        """
        with self._queue_lock:
            self._queue.append(pending)
        with self.turn:
            if not pending.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                write_group(group)
