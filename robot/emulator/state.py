"""Everything the emulator holds, behind one lock, plus its background machinery."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from robot.emulator.callees import parse_behaviour
from robot.emulator.limits import FaultInjector, RateWindow
from robot.emulator.records import CallRecord, MessageRecord, RequestRecord
from robot.emulator.scheduler import Scheduler
from robot.emulator.settings import EmulatorSettings
from robot.emulator.webhooks import CallbackLanes, WebhookClient
from robot.heap import GrowingRecords


class EmulatorState:
    """Records and run-time state of one emulator; ``app.extensions["emulator"]``.

    ``lock`` guards every attribute and record; ``changed`` is notified when a call or message
    changes status. ``generation`` increases on reset: work of older generations is dropped.
    """

    def __init__(self, settings: EmulatorSettings) -> None:
        if settings.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        for number, behaviour in settings.callees.items():
            try:
                parse_behaviour(behaviour)
            except ValueError as exc:
                raise ValueError(f"callees[{number!r}]: {exc}") from None
        self.settings = settings
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.generation = 0
        self.calls: dict[str, CallRecord] = {}
        self.messages: dict[str, MessageRecord] = {}
        self.requests: list[RequestRecord] = []
        self.overrides: dict[str, str] = dict(settings.callees)
        self.faults = FaultInjector()
        self.rate = RateWindow(settings.calls_per_second)
        self.active_calls = 0
        self.media_seconds: dict[str, float] = {}
        self.webhooks = WebhookClient(settings.auth_token, settings.callback_timeout)
        self.lanes = CallbackLanes(settings.callback_workers)
        self.scheduler = Scheduler(settings.time_scale, settings.call_workers)
        #: Set when the emulator has a process of its own (not in a test's process).
        self.heap: GrowingRecords | None = None
        self._closed = False
        self._epoch = time.monotonic()

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` has run."""
        return self._closed

    # --- time -----------------------------------------------------------------------------

    def emulated_now(self) -> float:
        """Emulated seconds on a monotonic clock (only differences mean anything)."""
        return (time.monotonic() - self._epoch) * self.settings.time_scale

    # --- queries --------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` (evaluated under the lock) holds or ``timeout`` passes.

        Shutting down ends every wait at once (a long poll must not hold up a stop).
        """
        with self.changed:
            return self.changed.wait_for(lambda: self._closed or predicate(), timeout) and (
                predicate()
            )

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def set_callees(self, overrides: Iterable[tuple[str, str]]) -> None:
        """Validate all, then apply all (ValueError names the bad one)."""
        items = list(overrides)
        for number, behaviour in items:
            try:
                parse_behaviour(behaviour)
            except ValueError as exc:
                raise ValueError(f"{number}: {exc}") from None
        with self.lock:
            self.overrides.update(items)

    # --- lifecycle ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every call, message, request, fault and run-time override."""
        with self.changed:
            self.generation += 1
            self.calls.clear()
            self.messages.clear()
            self.requests.clear()
            self.overrides = dict(self.settings.callees)
            self.faults.clear()
            self.rate.clear()
            self.active_calls = 0
            self.media_seconds.clear()
            self.changed.notify_all()
        if self.heap is not None:
            self.heap.forgotten()

    def shutdown(self) -> None:
        """Stop the background threads and close HTTP sessions (idempotent)."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self.generation += 1
        self.scheduler.shutdown()
        self.lanes.shutdown()
        self.webhooks.close()
        self.notify()
