"""Test doubles for the emulator suite: a tiny signed-webhook-checking "service", helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask, Response, request
from twilio.request_validator import RequestValidator
from werkzeug.serving import BaseWSGIServer, make_server

from robot.emulator import RunningEmulator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "emulator-test-auth-token"
API_KEY_SID = "SK" + "f" * 32
API_KEY_SECRET = "emulator-test-key-secret"
CALLER = "+15005550006"

SCRIPT = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Gather action="/gather" method="POST" numDigits="1" timeout="5">'
    "<Say>This is a fraud warning. Press 1 if you understood.</Say></Gather>"
    "<Say>We did not hear from you. Goodbye.</Say></Response>"
)
THANKS = "<Response><Say>Thank you.</Say></Response>"


@dataclass
class Hit:
    """One request the emulator made to the service."""

    path: str
    method: str
    url: str
    form: list[tuple[str, str]]
    query: list[tuple[str, str]]
    signature: str
    valid: bool
    time: float

    def get(self, name: str) -> str | None:
        for key, value in self.form or self.query:
            if key == name:
                return value
        return None


Responder = Callable[[Hit], "str | tuple[str, int]"]


class ServiceStub:
    """Serves TwiML per path, answers anything else 204, records and verifies every request."""

    def __init__(self, auth_token: str = AUTH_TOKEN) -> None:
        self.validator = RequestValidator(auth_token)
        self.hits: list[Hit] = []
        self.responses: dict[str, str | Responder] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.cond = threading.Condition()
        self.app = Flask("service-stub")
        self.app.add_url_rule("/<path:path>", "any", self._handle, methods=["GET", "POST"])
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> ServiceStub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()

    def url(self, path: str) -> str:
        return self.base_url + path

    def set(self, path: str, response: str | Responder) -> None:
        self.responses[path] = response

    def _handle(self, path: str) -> Response:
        path = "/" + path
        if path in self.files:
            data, content_type = self.files[path]
            return Response(data, content_type=content_type)
        form = list(request.form.items(multi=True))
        signature = request.headers.get("X-Twilio-Signature", "")
        params: Any = request.form if request.method == "POST" else {}
        hit = Hit(
            path,
            request.method,
            request.url,
            form,
            list(request.args.items(multi=True)),
            signature,
            self.validator.validate(request.url, params, signature),
            time.time(),
        )
        with self.cond:
            self.hits.append(hit)
            self.cond.notify_all()
        responder = self.responses.get(path)
        if responder is None:
            return Response(status=204)
        result = responder if isinstance(responder, str) else responder(hit)
        body, status = (result, 200) if isinstance(result, str) else result
        return Response(body, status=status, content_type="text/xml")

    def hits_for(self, path: str, call_sid: str | None = None) -> list[Hit]:
        with self.cond:
            return [
                h
                for h in self.hits
                if h.path == path and (call_sid is None or h.get("CallSid") == call_sid)
            ]

    def wait_hits(
        self, path: str, count: int, call_sid: str | None = None, timeout: float = 10
    ) -> list[Hit]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [
                    h
                    for h in self.hits
                    if h.path == path and (call_sid is None or h.get("CallSid") == call_sid)
                ]
                left = deadline - time.monotonic()
                if len(hits) >= count or left <= 0:
                    break
                self.cond.wait(left)
        assert len(hits) >= count, f"{path}: {len(hits)} of {count} requests after {timeout}s"
        return hits


def control(emulator: RunningEmulator, method: str, path: str, **kwargs: Any) -> Any:
    """Call the control API and return its JSON (asserting a 2xx answer)."""
    response = requests.request(
        method, emulator.base_url + "/_emulator" + path, timeout=30, **kwargs
    )
    with response:
        assert response.ok, response.text
        return response.json()


def wait_call(emulator: RunningEmulator, sid: str, timeout: float = 15) -> dict[str, Any]:
    """The call's control-API detail once it reached a terminal status."""
    detail: dict[str, Any] = control(emulator, "GET", f"/calls/{sid}?wait={timeout}")
    assert detail["status"] in ("completed", "busy", "failed", "no-answer", "canceled"), detail
    return detail


def wait_until(predicate: Callable[[], bool], timeout: float = 10, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def event_time(detail: dict[str, Any], status: str) -> float:
    return next(e["time"] for e in detail["events"] if e["status"] == status)


def wait_callbacks(emulator: RunningEmulator, sid: str, count: int) -> dict[str, Any]:
    """The call's detail once ``count`` callbacks were sent and their answers recorded."""
    details: list[dict[str, Any]] = []

    def enough() -> bool:
        details.append(control(emulator, "GET", f"/calls/{sid}"))
        return len(details[-1]["callbacks"]) >= count

    wait_until(enough)
    return details[-1]
