"""Keep the garbage collector's full passes short in the long-running processes."""

from __future__ import annotations

import gc
import threading

#: Records kept between two freezes of :class:`GrowingRecords`: a full pass walks at most
#: about this many records' objects (a few ms), not every record since the last reset.
FREEZE_EVERY = 1000


def freeze_startup_objects() -> None:
    """Move everything allocated so far out of the collector's reach.

    A full (generation 2) pass walks every tracked object, and after start-up most of them are
    modules, classes, the SDK's resource modules and the app's routes, which live as long as
    the process. Walked each time, they made a full pass of a worker take 41-83 ms and of the
    emulator 52 ms: one such pause between a pacing slot and its send put 21 calls in one
    second at a limit of 20. Frozen, they are never walked again (they were never going to be
    freed anyway).
    """
    gc.collect()
    gc.freeze()


class GrowingRecords:
    """Freezes the records of a process that keeps them all until a reset (the emulator).

    Such records are never garbage before the reset, yet every full pass walks all of them:
    with the tens of thousands a benchmark's dispatch runs leave, the emulator's full passes
    took 60-307 ms, and a provider that stops that long stamps the calls queued meanwhile as
    if they had come together (25 in one second at a pacing limit of 20). So every
    ``FREEZE_EVERY`` records what has survived is frozen, after a collection of the young
    generations (a cycle that is frozen is not freed until the next reset). Forgetting the
    records unfreezes everything and collects once, while nothing is being measured.
    """

    def __init__(self, every: int = FREEZE_EVERY) -> None:
        self._every = every
        self._since = 0
        self._lock = threading.Lock()

    def added(self) -> None:
        # The collector calls run under the lock too: a freeze between a reset's unfreeze and
        # its collection would freeze the garbage that collection is there to free.
        with self._lock:
            self._since += 1
            if self._since < self._every:
                return
            self._since = 0
            gc.collect(1)
            gc.freeze()

    def forgotten(self) -> None:
        with self._lock:
            self._since = 0
            gc.unfreeze()
            freeze_startup_objects()
