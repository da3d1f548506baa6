"""What the service needs from a telephony provider, and how its failures are classified."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class ProviderError(Exception):
    """A request the provider refused or could not take.

    ``permanent`` errors (invalid number, landline for SMS, opted out) stop that channel for the
    number; the others (429, 5xx, timeouts, connection errors) are retried with backoff.
    ``rate_limited`` marks a 429: every worker slows down, not only this one.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: int | None = None,
        status: int | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code
        self.status = status
        self.rate_limited = rate_limited


@dataclass(frozen=True)
class CallRequest:
    to: str
    from_: str
    twiml_url: str
    status_callback: str
    amd_callback: str | None
    ring_timeout: int


@dataclass(frozen=True)
class SmsRequest:
    to: str
    body: str
    status_callback: str
    from_: str | None = None
    messaging_service_sid: str | None = None
    validity_seconds: int = 600


@dataclass(frozen=True)
class Receipt:
    sid: str
    status: str


@dataclass(frozen=True)
class RemoteState:
    """What the provider says about a call or message now (for reconciling lost callbacks)."""

    sid: str
    status: str
    answered_by: str | None = None
    duration: int | None = None
    error_code: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Provider(Protocol):
    def place_call(self, request: CallRequest) -> Receipt: ...

    def send_sms(self, request: SmsRequest) -> Receipt: ...

    def update_call_twiml(self, sid: str, twiml: str) -> None: ...

    def fetch_call(self, sid: str) -> RemoteState: ...

    def fetch_message(self, sid: str) -> RemoteState: ...

    def find_call(self, to: str, since: datetime) -> RemoteState | None:
        """A call to ``to`` created since ``since``, if the provider has one."""
        ...
