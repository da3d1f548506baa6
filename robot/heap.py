"""Keep the garbage collector's full passes short in the long-running processes."""

from __future__ import annotations

import gc


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
