"""The URLs Twilio calls us at, built on the configured public base URL.

Signatures are computed by Twilio over the URL it was given, so we check them against these same
URLs rather than the request's own (a TLS-terminating proxy changes scheme and host).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebhookUrls:
    base: str

    def _url(self, path: str) -> str:
        return self.base.rstrip("/") + path

    def call_twiml(self, code: str, round_: int = 1) -> str:
        return self._url(f"/twilio/call/{code}/twiml?round={round_}")

    def call_gather(self, code: str, round_: int = 1) -> str:
        return self._url(f"/twilio/call/{code}/gather?round={round_}")

    def call_status(self, code: str) -> str:
        return self._url(f"/twilio/call/{code}/status")

    def call_amd(self, code: str) -> str:
        return self._url(f"/twilio/call/{code}/amd")

    def call_dial(self, code: str) -> str:
        return self._url(f"/twilio/call/{code}/dial")

    def sms_status(self, code: str) -> str:
        return self._url(f"/twilio/sms/{code}/status")

    def inbound_sms(self) -> str:
        return self._url("/twilio/inbound/sms")

    def inbound_call(self) -> str:
        return self._url("/twilio/inbound/call")

    def inbound_gather(self) -> str:
        return self._url("/twilio/inbound/gather")

    def inbound_dial(self) -> str:
        return self._url("/twilio/inbound/dial")
