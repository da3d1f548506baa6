"""Settings of the local Twilio-compatible carrier emulator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything the emulator needs; the service maps its ``[emulator]`` section onto this."""

    #: Credentials the REST API accepts (HTTP Basic) and the key webhooks are signed with.
    account_sid: str
    auth_token: str
    #: Optional API key pair, accepted for REST requests besides the account credentials.
    api_key_sid: str = ""
    api_key_secret: str = ""
    #: Emulated seconds per real second: 50 makes a 60 s ring last 1.2 s.
    time_scale: float = 1.0
    #: Call creates allowed in any one-second window (0 = no limit); past it → 429 / 20429.
    calls_per_second: float = 0
    #: Calls not yet in a terminal state (0 = no limit); past it → 429 / 20429.
    max_concurrent_calls: int = 0
    #: Number → behaviour override (see :mod:`robot.emulator.callees`).
    callees: Mapping[str, str] = field(default_factory=dict)
    #: Where inbound SMS / inbound calls are delivered (the service's webhooks).
    inbound_sms_url: str = ""
    inbound_voice_url: str = ""
    #: Emulated seconds a "long-ring" callee lets the phone ring before answering.
    long_ring_seconds: float = 20
    #: Real seconds one webhook (callback, TwiML fetch) may take.
    callback_timeout: float = 5.0
    #: Threads running call steps (TwiML fetches) and threads sending async callbacks.
    call_workers: int = 32
    callback_workers: int = 16
