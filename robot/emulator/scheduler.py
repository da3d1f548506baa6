"""Runs many simulated calls on a few threads: a timer heap plus a worker pool.

A simulation is a generator that yields how many *emulated* seconds it wants to sleep; the
scheduler resumes it on a worker thread once that time (divided by ``time_scale``) has passed.
Blocking work between yields (a TwiML fetch) occupies one worker, not a thread per call.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

#: A simulation: yields emulated seconds to sleep, returns when done.
Simulation = Generator[float, None, None]


class Task:
    """One running simulation. ``wake()`` resumes it early (it re-checks what changed)."""

    def __init__(self, gen: Simulation, on_error: Callable[[BaseException], None]) -> None:
        self.gen = gen
        self.on_error = on_error
        self.lock = threading.Lock()
        self.token = 0
        self.running = False
        self.wake_pending = False
        self.done = False


class Scheduler:
    def __init__(self, time_scale: float, workers: int) -> None:
        self.time_scale = time_scale
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emulator-call")
        self._thread = threading.Thread(target=self._run, name="emulator-timers", daemon=True)
        self._thread.start()

    # --- public ---------------------------------------------------------------------------

    def start(self, gen: Simulation, on_error: Callable[[BaseException], None]) -> Task:
        task = Task(gen, on_error)
        self._submit(lambda: self._step(task, task.token))
        return task

    def wake(self, task: Task) -> None:
        with task.lock:
            if task.done:
                return
            if task.running:
                task.wake_pending = True
                return
            task.token += 1
            token = task.token
        self._submit(lambda: self._step(task, token))

    def call_later(self, emulated_seconds: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a worker after ``emulated_seconds``."""
        self._push(emulated_seconds, fn)

    def shutdown(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- internals ------------------------------------------------------------------------

    def _push(self, emulated_seconds: float, fn: Callable[[], None]) -> None:
        """Submit ``fn`` to the pool once ``emulated_seconds`` have passed."""
        due = time.monotonic() + max(0.0, emulated_seconds) / self.time_scale
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (due, next(self._seq), fn))
            if self._heap[0][2] is fn:
                self._cond.notify()

    def _submit(self, fn: Callable[[], None]) -> None:
        try:
            self._pool.submit(self._guard, fn)
        except RuntimeError:  # pool shut down
            pass

    @staticmethod
    def _guard(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # pragma: no cover - a bug; keep the worker alive
            log.exception("emulator task failed")

    def _step(self, task: Task, token: int) -> None:
        with task.lock:
            if task.done or task.running or token != task.token:
                return
            task.running = True
            task.wake_pending = False
        delay: float | None = None
        try:
            delay = next(task.gen)
        except StopIteration:
            pass
        except Exception as exc:
            task.on_error(exc)
        with task.lock:
            task.running = False
            if delay is None:
                task.done = True
                return
            task.token += 1
            token = task.token
            if task.wake_pending:
                task.wake_pending = False
                delay = 0.0
        if delay <= 0:
            self._submit(lambda: self._step(task, token))
        else:
            self._push(delay, lambda: self._step(task, token))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                due: list[Callable[[], None]] = []
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            for fn in due:
                self._submit(fn)
