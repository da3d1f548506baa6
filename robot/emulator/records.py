"""What the emulator remembers: calls, messages, REST requests and webhooks it sent.

Every record is mutated only while holding the state lock (:class:`~.state.EmulatorState`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from robot.emulator.callees import Callee

Params = list[tuple[str, str]]

CALL_TERMINAL = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
MESSAGE_TERMINAL = frozenset({"delivered", "undelivered", "failed", "received"})


@dataclass
class WebhookRecord:
    """One HTTP request the emulator made to the service, and what the service answered."""

    #: "status-callback", "amd-callback", "twiml", "gather-action", "dial-action", "redirect",
    #: "update", "sms-status-callback", "inbound-sms", "inbound-voice".
    kind: str
    url: str
    method: str
    params: Params
    time: float
    status_code: int | None = None
    error: str | None = None
    response_body: str = ""
    #: For status callbacks: the event (initiated, ringing, answered, completed, …).
    event: str = ""


@dataclass
class Event:
    time: float
    status: str
    detail: str = ""


@dataclass
class DigitsRecord:
    time: float
    gather_index: int
    digits: str


@dataclass(frozen=True)
class Update:
    """A pending ``calls(sid).update(url=…/twiml=…)`` for the running call to pick up."""

    url: str | None
    method: str
    twiml: str | None


@dataclass
class CallRecord:
    sid: str
    account_sid: str
    to: str
    from_: str
    direction: str
    callee: Callee
    status: str = "queued"
    parent_call_sid: str | None = None
    date_created: float = field(default_factory=time.time)
    date_updated: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    duration: int | None = None
    answered_by: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    sip_response_code: int | None = None
    # what the create request asked for
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset({"completed"})
    timeout: int = 60
    time_limit: int = 14400
    machine_detection: str | None = None
    async_amd: bool = False
    amd_callback: str | None = None
    amd_callback_method: str = "POST"
    # what happened
    events: list[Event] = field(default_factory=list)
    documents: list[WebhookRecord] = field(default_factory=list)
    callbacks: list[WebhookRecord] = field(default_factory=list)
    digits: list[DigitsRecord] = field(default_factory=list)
    # run-time control
    generation: int = 0
    counts_as_active: bool = False
    sequence: int = 0
    gather_count: int = 0
    answered_at: float | None = None  # monotonic
    amd_sent: bool = False
    hangup_requested: bool = False
    pending_update: Update | None = None
    #: Resumes the simulation early so it notices a hang-up or update.
    wake: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in CALL_TERMINAL

    def add_event(self, status: str, detail: str = "") -> None:
        now = time.time()
        self.events.append(Event(now, status, detail))
        self.date_updated = now


@dataclass
class MessageRecord:
    sid: str
    account_sid: str
    to: str
    from_: str | None
    body: str
    direction: str
    status: str
    num_segments: int
    callee_text: str = ""
    messaging_service_sid: str | None = None
    date_created: float = field(default_factory=time.time)
    date_updated: float = field(default_factory=time.time)
    date_sent: float | None = None
    error_code: int | None = None
    error_message: str | None = None
    status_callback: str | None = None
    validity_period: int | None = None
    events: list[Event] = field(default_factory=list)
    callbacks: list[WebhookRecord] = field(default_factory=list)
    generation: int = 0
    undeliverable: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in MESSAGE_TERMINAL

    def add_event(self, status: str, detail: str = "") -> None:
        now = time.time()
        self.events.append(Event(now, status, detail))
        self.date_updated = now


@dataclass
class RequestRecord:
    """One REST request received (the control API is not recorded)."""

    time: float
    method: str
    path: str
    query: Params
    params: Params
    status: int
    auth_user: str | None
    #: The SID of the call/message it created, if it created one.
    sid: str | None = None
