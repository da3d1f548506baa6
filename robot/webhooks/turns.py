"""SQLite: a web process handles one status callback at a time, from its signature to its commit.

Every status callback writes, and SQLite has one write lock for all processes, so two callbacks
never wrote at once anyway. Handled side by side in one process's threads, the one holding the
lock shared the GIL with the others' form parsing and HMAC, held the lock for longer, and the
other process waited for it. One at a time in each process, one process writes while the other
checks. In bench runs of signed callbacks on SQLite, interleaved, twelve one at a time gave
783–1,493/s at 1.00–1.93 CPU-ms a callback with a p99 of 26–51 ms, and ten side by side gave
504–1,262/s at 1.20–2.08 CPU-ms with a p99 of 47–75 ms; one at a time was ahead in 9 of the 10
pairs of runs next to each other.

PostgreSQL takes concurrent writers: there the callbacks stay side by side.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from robot.app import Services, services
from robot.db import is_postgres

F = TypeVar("F", bound=Callable[..., Any])


def status_callback_turn(svc: Services) -> threading.Lock:
    """The app's lock (the tests run several apps in one process; setdefault is atomic)."""
    turn: threading.Lock = svc.extras.setdefault("status_callback_turn", threading.Lock())
    return turn


def one_at_a_time_on_sqlite(view: F) -> F:
    """Run the view under the process's status-callback turn when the database is SQLite."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        svc = services()
        if is_postgres(svc.engine):
            return view(*args, **kwargs)
        with status_callback_turn(svc):
            return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
