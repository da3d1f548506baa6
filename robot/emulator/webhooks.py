"""HTTP requests to the service: signed webhooks and TwiML fetches, sync or in ordered lanes."""

from __future__ import annotations

import codecs
import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus, urlencode

import urllib3

from robot.emulator.records import Params, WebhookRecord
from robot.emulator.signing import compute_signature

log = logging.getLogger(__name__)


USER_AGENT = "TwilioProxy/1.1"
#: Left unescaped in GET query strings: WSGI frameworks (werkzeug's ``request.url``) show them
#: unescaped too, so the URL the service rebuilds is the one that was signed.
QUERY_SAFE = "!$'()*,/:;@~"
MAX_BODY = 1_000_000
MAX_MEDIA = 20_000_000


#: quote_plus of recent names and values: a webhook's names never change and most of its values
#: (account, numbers, statuses) repeat from call to call. urlencode quotes every one afresh:
#: 0.24 M instructions of a status callback's 1.36 M (in-process count); this, about 0.05 M.
_quote = functools.lru_cache(maxsize=8192)(quote_plus)


def form_body(params: Params) -> bytes:
    """``urlencode(params)``, byte for byte, with the quoting of repeated strings cached."""
    return "&".join([_quote(name) + "=" + _quote(value) for name, value in params]).encode("ascii")


@dataclass(frozen=True)
class WebhookResult:
    status_code: int | None
    body: str
    content_type: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _charset(content_type: str) -> str:
    """The declared charset, else UTF-8 (TwiML is UTF-8 whatever ``text/xml`` implies)."""
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value.strip('"'):
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"


class WebhookClient:
    """Sends webhooks signed with the auth token over kept-alive connections.

    urllib3's pools, shared by every thread: the requests Session this replaced spent more of
    the emulator's CPU on its own bookkeeping (merging settings, cookies, hooks) than on HTTP.
    """

    def __init__(self, auth_token: str, timeout: float) -> None:
        self.auth_token = auth_token
        self.timeout = timeout
        # No retries (a failed webhook is Twilio's error 11200, not a second try); redirects are
        # followed, as Twilio does.
        self._retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=10)
        self._http = urllib3.PoolManager(
            num_pools=16, maxsize=32, timeout=urllib3.Timeout(total=timeout)
        )

    def send(self, url: str, method: str, params: Params) -> WebhookResult:
        """POST the params form-encoded (or GET them in the query), signed; never raises."""
        method = method.upper()
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Accept-Encoding": "gzip, deflate",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        body: bytes | None = None
        if method == "GET":
            full_url = url
            if params:
                query = urlencode(params, safe=QUERY_SAFE)
                full_url += ("&" if "?" in url else "?") + query
            headers["X-Twilio-Signature"] = compute_signature(self.auth_token, full_url)
        else:
            full_url = url
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
            headers["X-Twilio-Signature"] = compute_signature(self.auth_token, url, params)
            body = form_body(params)
        try:
            # urlopen, not request(): with the body already encoded, request() only copies the
            # headers into an HTTPHeaderDict on the way (4% of a webhook's instructions).
            response = self._http.urlopen(
                method, full_url, body=body, headers=headers, retries=self._retries
            )
        except urllib3.exceptions.MaxRetryError as exc:
            reason = exc.reason or exc
            return WebhookResult(None, "", "", f"{type(reason).__name__}: {reason}")
        except (urllib3.exceptions.HTTPError, ValueError) as exc:  # ValueError: a bad URL
            return WebhookResult(None, "", "", f"{type(exc).__name__}: {exc}")
        content_type = response.headers.get("Content-Type", "")
        text = response.data[:MAX_BODY].decode(_charset(content_type), "replace")
        return WebhookResult(response.status, text, content_type, None)

    def send_recorded(
        self, kind: str, url: str, method: str, params: Params, event: str = ""
    ) -> tuple[WebhookResult, WebhookRecord]:
        """:meth:`send`, and the record of what was sent and what came back."""
        result = self.send(url, method, params)
        record = WebhookRecord(
            kind,
            url,
            method.upper(),
            params,
            time.time(),
            result.status_code,
            result.error,
            result.body,
            event,
        )
        return result, record

    def fetch_media(self, url: str) -> bytes | None:
        """GET an audio file (unsigned, as Twilio fetches media); None when unreachable."""
        try:
            response = self._http.request("GET", url, retries=self._retries)
        except (urllib3.exceptions.HTTPError, ValueError):
            return None
        if response.status != 200 or len(response.data) > MAX_MEDIA:
            return None
        return bytes(response.data)

    def close(self) -> None:
        self._http.clear()


class CallbackLanes:
    """Background delivery: jobs with the same key run in order, on one of N lane threads."""

    def __init__(self, lanes: int) -> None:
        self._queues: list[queue.SimpleQueue[Callable[[], None] | None]] = [
            queue.SimpleQueue() for _ in range(max(1, lanes))
        ]
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(q,), name=f"emulator-cb-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, job: Callable[[], None]) -> None:
        if self._stopping.is_set():
            return
        self._queues[hash(key) % len(self._queues)].put(job)

    def shutdown(self) -> None:
        self._stopping.set()
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self, q: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        while True:
            job = q.get()
            if job is None or self._stopping.is_set():
                return
            try:
                job()
            except Exception:  # pragma: no cover - a bug; keep the lane alive
                log.exception("emulator callback job failed")
