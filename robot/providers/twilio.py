"""The Twilio provider: the only module that imports ``twilio``.

Works unchanged against real Twilio, the local emulator and Twilio-compatible APIs: the base URL
and credentials come from settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from robot.config import TwilioSettings
from robot.phones import mask
from robot.providers import CallRequest, ProviderError, Receipt, RemoteState, SmsRequest

log = logging.getLogger(__name__)

#: Error codes that will not change by retrying: invalid or unreachable number, landline for
#: SMS, unsubscribed, blocked, not a mobile number, permission (geo) problems.
PERMANENT_CODES = frozenset(
    {21211, 21214, 21215, 21216, 21217, 21210, 21212, 21408, 21610, 21612, 21614, 21635, 13224,
     13223, 30005, 30006, 21401, 21421}
)  # fmt: skip


class _BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Sends every request to the configured base URL (emulator or compatible API).

    Rewriting the URL here, after the SDK built it, keeps edge/region handling out of the way.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout, pool_connections=True)
        self._base = urlsplit(base_url.rstrip("/"))
        # requests reads the proxy and CA-bundle variables from the environment again on every
        # request: a sixth of an SDK call's CPU in a profile of the worker. Read them once, for
        # the one host we talk to; the SDK passes self.proxy with each request.
        found = self.session.merge_environment_settings(base_url, {}, None, None, None)
        self.proxy = dict(found["proxies"])
        self.session.verify = found["verify"]
        self.session.trust_env = False

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        path = self._base.path + parts.path
        url = urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, ""))
        return super().request(method, url, *args, **kwargs)


def classify(exc: Exception) -> ProviderError:
    if isinstance(exc, TwilioRestException):
        code = exc.code if isinstance(exc.code, int) else None
        status = exc.status
        rate_limited = status == 429 or code == 20429
        permanent = (code in PERMANENT_CODES) or (
            status is not None and 400 <= status < 500 and not rate_limited and code != 20003
        )
        if code == 20003:  # bad credentials: a configuration problem, not this number's
            permanent = False
        return ProviderError(
            f"provider refused ({status}, code {code}): {exc.msg}",
            permanent=permanent,
            code=code,
            status=status,
            rate_limited=rate_limited,
        )
    # Timeouts, refused connections, broken responses: transient. The exception text holds the
    # request URL, whose query may carry the number: keep only the kind of failure.
    return ProviderError(f"provider unreachable: {type(exc).__name__}", permanent=False)


class TwilioProvider:
    def __init__(self, settings: TwilioSettings) -> None:
        self._settings = settings
        http = _BaseUrlHttpClient(settings.api_base_url, settings.request_timeout)
        if settings.api_key_sid:
            self._client = Client(
                settings.api_key_sid,
                settings.api_key_secret,
                account_sid=settings.account_sid,
                http_client=http,
                environment={},
            )
        else:
            self._client = Client(
                settings.account_sid, settings.auth_token, http_client=http, environment={}
            )

    def place_call(self, request: CallRequest) -> Receipt:
        extra: dict[str, Any] = {}
        if request.amd_callback:
            extra.update(
                machine_detection="DetectMessageEnd",
                async_amd="true",
                async_amd_status_callback=request.amd_callback,
                async_amd_status_callback_method="POST",
            )
        try:
            call = self._client.calls.create(
                to=request.to,
                from_=request.from_,
                url=request.twiml_url,
                method="POST",
                status_callback=request.status_callback,
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                status_callback_method="POST",
                timeout=request.ring_timeout,
                **extra,
            )
        except (TwilioException, OSError) as exc:
            raise self._failed("call", request.to, exc) from exc
        return Receipt(sid=str(call.sid), status=str(call.status))

    def send_sms(self, request: SmsRequest) -> Receipt:
        sender: dict[str, Any] = (
            {"messaging_service_sid": request.messaging_service_sid}
            if request.messaging_service_sid
            else {"from_": request.from_ or ""}
        )
        try:
            message = self._client.messages.create(
                to=request.to,
                body=request.body,
                status_callback=request.status_callback,
                validity_period=request.validity_seconds,
                **sender,
            )
        except (TwilioException, OSError) as exc:
            raise self._failed("sms", request.to, exc) from exc
        return Receipt(sid=str(message.sid), status=str(message.status))

    def update_call_twiml(self, sid: str, twiml: str) -> None:
        try:
            self._client.calls(sid).update(twiml=twiml)
        except (TwilioException, OSError) as exc:
            raise classify(exc) from exc

    def fetch_call(self, sid: str) -> RemoteState:
        try:
            call = self._client.calls(sid).fetch()
        except (TwilioException, OSError) as exc:
            raise classify(exc) from exc
        return RemoteState(
            sid=sid,
            status=str(call.status),
            answered_by=call.answered_by,
            duration=int(call.duration) if call.duration else None,
        )

    def fetch_message(self, sid: str) -> RemoteState:
        try:
            message = self._client.messages(sid).fetch()
        except (TwilioException, OSError) as exc:
            raise classify(exc) from exc
        return RemoteState(sid=sid, status=str(message.status), error_code=message.error_code)

    def find_call(self, to: str, since: datetime) -> RemoteState | None:
        # Twilio keeps no idempotency key and the Call resource does not echo our Url, so a
        # call to the same number created after our claim is taken to be ours: attempts to one
        # number are minutes apart, never concurrent.
        try:
            calls = self._client.calls.list(to=to, limit=20)
        except (TwilioException, OSError) as exc:
            raise classify(exc) from exc
        for call in calls:
            created = call.date_created
            if created is not None and created >= since - timedelta(seconds=2):
                return RemoteState(sid=str(call.sid), status=str(call.status))
        return None

    def _failed(self, what: str, to: str, exc: Exception) -> ProviderError:
        error = classify(exc)
        log.warning("%s to %s failed: %s", what, mask(to), error.message.replace(to, mask(to)))
        return error


class SignatureChecker:
    """Checks X-Twilio-Signature with the SDK's validator, for every accepted auth token."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._validators = [RequestValidator(token) for token in tokens if token]

    def valid(self, url: str, params: Mapping[str, object], signature: str | None) -> bool:
        if not signature:
            return False
        return any(v.validate(url, params, signature) for v in self._validators)
