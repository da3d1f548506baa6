"""The Twilio provider: the only module that imports ``twilio``.

Works unchanged against real Twilio, the local emulator and Twilio-compatible APIs: the base URL
and credentials come from settings.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlparse, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from urllib3 import PoolManager
from urllib3.exceptions import HTTPError
from urllib3.util import make_headers

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
#: Content types the SDK sends as JSON (everything else is a form).
_JSON_TYPES = ("application/json", "application/scim+json")
#: What a request may raise: the SDK's errors (refusals) and the network's (urllib3, sockets).
_FAILURES = (TwilioException, OSError, HTTPError)
#: The call progress events that come back as status callbacks. "initiated" and "ringing" told
#: nothing the create response and the final status do not (no part of the service reads them),
#: yet each was a signed request and a write: an answered call brought back four callbacks, one
#: that was not answered two or three; now two and one. "answered" stays: it marks a live call
#: even if the TwiML request that follows fails.
CALL_STATUS_EVENTS = ["answered", "completed"]


class _BaseUrlHttpClient(HttpClient):  # type: ignore[misc]
    """The SDK's HTTP client: every request goes to the configured base URL, through urllib3.

    Rewriting the URL here, after the SDK built it, keeps edge/region handling out of the way.
    The SDK's own client goes through requests, whose request preparation (cookies, hooks, the
    environment merge, typing-Protocol isinstance checks on every body) was half of the worker's
    CPU per call placed; the SDK still builds each request and reads each response. The
    connections and TLS settings are the ones requests would use: its adapter's pool managers.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(log, False, timeout)
        self._base = urlsplit(base_url.rstrip("/"))
        # Proxy and CA-bundle variables are read once, for the one host we talk to, the way
        # requests would read them on every request (trust_env: HTTPS_PROXY, NO_PROXY,
        # REQUESTS_CA_BUNDLE, ...).
        with requests.Session() as session:
            found = session.merge_environment_settings(base_url, {}, None, None, None)
        self.proxy: dict[str, str] = dict(found["proxies"])
        self.verify: bool | str = found["verify"] if found["verify"] is not None else True
        self._adapter = HTTPAdapter(pool_maxsize=16)
        proxy = select_proxy(base_url, self.proxy)
        self._pool: PoolManager = (
            self._adapter.proxy_manager_for(proxy) if proxy else self._adapter.poolmanager
        )
        if self.verify is False:
            self._pool.connection_pool_kw["cert_reqs"] = "CERT_NONE"
        else:
            # requests' own default is certifi's bundle, not the system's store (which a slim
            # image may lack): the same here.
            bundle = self.verify if isinstance(self.verify, str) else DEFAULT_CA_BUNDLE_PATH
            key = "ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"
            self._pool.connection_pool_kw.update({"cert_reqs": "CERT_REQUIRED", key: bundle})

    def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, object] | None = None,
        data: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        parts = urlsplit(url)
        query = parts.query
        if params:
            query = "&".join(q for q in (query, urlencode(params, doseq=True)) if q)
        target = urlunsplit(
            (self._base.scheme, self._base.netloc, self._base.path + parts.path, query, "")
        )
        sent = dict(headers or {})
        if auth is not None:
            sent.update(make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        body: bytes | None = None
        if sent.get("Content-Type") in _JSON_TYPES:
            body = json.dumps(data, allow_nan=False).encode() if data is not None else None
        elif data:
            # As requests encodes a form: a list value is one field per item.
            body = urlencode(data, doseq=True).encode()
        response = self._pool.urlopen(
            method.upper(),
            target,
            body=body,
            headers=sent,
            redirect=allow_redirects,
            retries=False,
            timeout=self.timeout if timeout is None else timeout,
        )
        return Response(response.status, response.data.decode("utf-8", "replace"), response.headers)

    def close(self) -> None:
        self._adapter.close()


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
        # The SDK imports its whole v2010 API (hundreds of modules) on the first use of
        # ``calls`` or ``messages``: 0.5 s on a slow machine, inside the first create, holding
        # the GIL, so the first paced calls after a start went out late and bunched with the
        # next ones (21 in one second at a limit of 20). Done here, before the worker places
        # anything and before it freezes its start-up objects.
        _ = self._client.calls, self._client.messages

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
                status_callback_event=CALL_STATUS_EVENTS,
                status_callback_method="POST",
                timeout=request.ring_timeout,
                **extra,
            )
        except _FAILURES as exc:
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
        except _FAILURES as exc:
            raise self._failed("sms", request.to, exc) from exc
        return Receipt(sid=str(message.sid), status=str(message.status))

    def update_call_twiml(self, sid: str, twiml: str) -> None:
        try:
            self._client.calls(sid).update(twiml=twiml)
        except _FAILURES as exc:
            raise classify(exc) from exc

    def fetch_call(self, sid: str) -> RemoteState:
        try:
            call = self._client.calls(sid).fetch()
        except _FAILURES as exc:
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
        except _FAILURES as exc:
            raise classify(exc) from exc
        return RemoteState(sid=sid, status=str(message.status), error_code=message.error_code)

    def find_call(self, to: str, since: datetime) -> RemoteState | None:
        # Twilio keeps no idempotency key and the Call resource does not echo our Url, so a
        # call to the same number created after our claim is taken to be ours: attempts to one
        # number are minutes apart, never concurrent.
        try:
            calls = self._client.calls.list(to=to, limit=20)
        except _FAILURES as exc:
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


class _Lists(dict[str, list[str]]):
    """A form as the SDK's validator reads it best: ``getall`` gives a name's values.

    Given werkzeug's MultiDict, the validator first tries ``getall`` and catches the
    AttributeError before it uses ``getlist``: two exceptions per parameter per signature.
    """

    __slots__ = ()

    def getall(self, name: str) -> list[str]:
        return self[name]


class SignatureChecker:
    """Checks X-Twilio-Signature with the SDK's validator, for every accepted auth token.

    ``RequestValidator.validate`` computes two signatures (the URL with and without a port;
    Twilio may sign either) and compares each. The URL as configured is one of the two (the
    SDK's ``add_port`` and ``remove_port`` give it back unchanged when it has, or has not, a
    port), and it is the one Twilio signs for our callback URLs: one HMAC with the SDK's own
    ``compute_signature`` settles a genuine callback. Anything else goes through ``validate``
    for every accepted token, so what is accepted is exactly what the SDK accepts (item 17 of
    docs/performance-history.md).
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        self._validators = [RequestValidator(token) for token in tokens if token]

    def valid(self, url: str, params: Mapping[str, Any], signature: str | None) -> bool:
        if not signature:
            return False
        lists: Callable[[], Iterable[tuple[str, list[str]]]] | None = getattr(params, "lists", None)
        if lists is not None:
            form = _Lists(lists())
            as_given = urlparse(url).geturl()
            expected = signature.encode()
            for validator in self._validators:
                computed = validator.compute_signature(as_given, form)
                if hmac.compare_digest(computed.encode(), expected):
                    return True
        return any(v.validate(url, params, signature) for v in self._validators)
