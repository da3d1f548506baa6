"""The account limits (call creates per second) and injected REST faults."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from robot.emulator.errors import FAULT_DEFAULTS, ApiError


class RateWindow:
    """At most ``rate`` events in any sliding window of one second (0 = unlimited).

    A rate below one allows a single event per ``1/rate`` seconds. Not thread-safe: callers
    hold the state lock.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.window = max(1.0, 1.0 / rate) if rate > 0 else 1.0
        self.capacity = max(1, math.floor(rate * self.window + 1e-9)) if rate > 0 else 0
        self._times: deque[float] = deque()

    def try_acquire(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.capacity:
            return False
        times.append(now)
        return True

    def clear(self) -> None:
        self._times.clear()


@dataclass
class Fault:
    remaining: int
    status: int
    code: int
    message: str


class FaultInjector:
    """``POST /_emulator/faults``: the next N creates of a kind fail, then all is well again."""

    KINDS = ("calls", "messages")

    def __init__(self) -> None:
        self._faults: dict[str, deque[Fault]] = {kind: deque() for kind in self.KINDS}

    def add(self, kind: str, count: int, status: int, code: int | None = None) -> None:
        if kind not in self._faults:
            raise ValueError(f"kind must be one of {', '.join(self.KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status")
        default_code, message = FAULT_DEFAULTS.get(status, (status, "Injected failure"))
        self._faults[kind].append(Fault(count, status, code or default_code, message))

    def take(self, kind: str) -> ApiError | None:
        """The error the next create of ``kind`` fails with, if a fault is pending."""
        queue = self._faults[kind]
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return ApiError(fault.status, fault.code, fault.message)

    def pending(self) -> dict[str, int]:
        return {kind: sum(f.remaining for f in queue) for kind, queue in self._faults.items()}

    def clear(self) -> None:
        for queue in self._faults.values():
            queue.clear()
