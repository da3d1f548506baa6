"""HTTP requests to the service: signed webhooks and TwiML fetches, sync or in ordered lanes."""

from __future__ import annotations

import codecs
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import requests

from robot.emulator.signing import compute_signature

log = logging.getLogger(__name__)

Params = list[tuple[str, str]]

USER_AGENT = "TwilioProxy/1.1"
#: Left unescaped in GET query strings: WSGI frameworks (werkzeug's ``request.url``) show them
#: unescaped too, so the URL the service rebuilds is the one that was signed.
QUERY_SAFE = "!$'()*,/:;@~"
MAX_BODY = 1_000_000
MAX_MEDIA = 20_000_000


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
    """Sends webhooks signed with the auth token; one keep-alive session per thread."""

    def __init__(self, auth_token: str, timeout: float) -> None:
        self.auth_token = auth_token
        self.timeout = timeout
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def send(self, url: str, method: str, params: Params) -> WebhookResult:
        """POST the params form-encoded (or GET them in the query), signed; never raises."""
        method = method.upper()
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        try:
            if method == "GET":
                full_url = url
                if params:
                    query = urlencode(params, safe=QUERY_SAFE)
                    full_url += ("&" if "?" in url else "?") + query
                headers["X-Twilio-Signature"] = compute_signature(self.auth_token, full_url)
                response = self._session().get(full_url, headers=headers, timeout=self.timeout)
            else:
                headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
                headers["X-Twilio-Signature"] = compute_signature(self.auth_token, url, params)
                response = self._session().post(
                    url,
                    data=urlencode(params).encode("ascii"),
                    headers=headers,
                    timeout=self.timeout,
                )
            with response:
                content_type = response.headers.get("Content-Type", "")
                body = response.content[:MAX_BODY].decode(_charset(content_type), "replace")
                return WebhookResult(response.status_code, body, content_type, None)
        except requests.RequestException as exc:
            return WebhookResult(None, "", "", f"{type(exc).__name__}: {exc}")
        except ValueError as exc:  # e.g. a URL requests cannot parse
            return WebhookResult(None, "", "", f"{type(exc).__name__}: {exc}")

    def fetch_media(self, url: str) -> bytes | None:
        """GET an audio file (unsigned, as Twilio fetches media); None when unreachable."""
        try:
            response = self._session().get(url, timeout=self.timeout)
            with response:
                if response.status_code != 200 or len(response.content) > MAX_MEDIA:
                    return None
                return response.content
        except (requests.RequestException, ValueError):
            return None

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


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
