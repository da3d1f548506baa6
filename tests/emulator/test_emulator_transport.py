"""The emulator's HTTP plumbing: connections kept alive both ways, webhooks signed and sent."""

from __future__ import annotations

import base64
import gzip
import http.client
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from flask import Flask, Response, redirect, request
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from robot.emulator import EmulatorSettings, RunningEmulator
from robot.emulator.scheduler import Scheduler
from robot.emulator.server import _make_server
from robot.emulator.webhooks import WebhookClient

from .support import ACCOUNT_SID, AUTH_TOKEN

AUTH = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
CALLS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
CREATE = "To=%2B15005550016&From=%2B15005550006&Twiml=%3CResponse%2F%3E"


def _address(emulator: RunningEmulator) -> tuple[str, int]:
    host, port = emulator.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _raw(emulator: RunningEmulator, data: bytes) -> socket.socket:
    sock = socket.create_connection(_address(emulator), timeout=5)
    sock.sendall(data)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# --- the server -------------------------------------------------------------------------------


def test_stop_closes_the_sockets_of_a_loop_that_already_ended() -> None:
    # A loop that ended early (its select() failed) leaves the listening socket open: stop()
    # must close it, or the garbage collector warns later, in whatever test runs then.
    server, state = _make_server(
        EmulatorSettings(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN), "127.0.0.1", 0
    )
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    listening = server.socket
    RunningEmulator("http://127.0.0.1:0", state, server, ended).stop()
    assert listening.fileno() == -1


def test_rest_connections_are_kept_alive(emulator: RunningEmulator) -> None:
    conn = http.client.HTTPConnection(*_address(emulator), timeout=5)
    headers = {"Authorization": AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    conn.request("POST", CALLS, body=CREATE, headers=headers)
    first = conn.getresponse()
    assert first.status == 201 and first.read().startswith(b"{")
    sock = conn.sock
    assert sock is not None and first.getheader("Connection") is None
    conn.request("GET", "/_emulator/health")
    second = conn.getresponse()
    assert second.status == 200 and b'"calls": 1' in second.read().replace(b'":1', b'": 1')
    assert conn.sock is sock  # the same connection served both
    conn.request("GET", CALLS, headers={"Authorization": "Basic bad"})
    third = conn.getresponse()
    assert third.status == 401 and third.getheader("WWW-Authenticate")
    third.read()
    conn.close()
    recorded = requests.get(emulator.base_url + "/_emulator/requests", timeout=5).json()
    assert [r["status"] for r in recorded] == [201, 401]


def test_stop_closes_kept_alive_connections(
    make_emulator: Callable[..., RunningEmulator],
) -> None:
    emulator = make_emulator()
    with _raw(emulator, b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        assert sock.recv(12) == b"HTTP/1.1 200"
        emulator.stop()
        sock.settimeout(5)
        _read_all(sock)  # EOF (or a reset) instead of a connection that lingers
    with pytest.raises(OSError):
        socket.create_connection(_address(emulator), timeout=2).close()


def test_stop_ends_long_polls_at_once(make_emulator: Callable[..., RunningEmulator]) -> None:
    emulator = make_emulator(time_scale=1.0, callees={"+15005550016": "no-answer"})
    created = requests.post(
        emulator.base_url + CALLS,
        data={"To": "+15005550016", "From": "+15005550006", "Twiml": "<Response/>"},
        headers={"Authorization": AUTH},
        timeout=5,
    )
    sid = created.json()["sid"]
    polled: list[int | str] = []

    def poll() -> None:  # rings for 30 s: the poll would block that long
        try:
            url = f"{emulator.base_url}/_emulator/calls/{sid}?wait=30"
            polled.append(requests.get(url, timeout=10).status_code)
        except requests.RequestException as exc:
            polled.append(type(exc).__name__)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    started = time.monotonic()
    emulator.stop()
    poller.join(5)
    assert time.monotonic() - started < 2
    assert polled == [200]


# --- the webhook client -----------------------------------------------------------------------


class _Target:
    """A werkzeug server (one connection per request) with a few odd answers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.headers: list[dict[str, str]] = []
        app = Flask("target")

        @app.route("/<path:path>", methods=["GET", "POST"])
        def any_path(path: str) -> Any:
            self.seen.append((request.method, request.full_path, request.get_data()))
            self.headers.append(dict(request.headers))
            if path == "temporary":
                return redirect("/landed", 307)
            if path == "see-other":
                return redirect("/landed", 303)
            if path == "zipped":
                data = gzip.compress(b"<Response><Say>zipped</Say></Response>")
                return Response(data, headers={"Content-Encoding": "gzip"}, content_type="text/xml")
            return Response(f"{request.method} {path}", content_type="text/plain; charset=utf-8")

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[_Target]:
    server = _Target()
    yield server
    server.stop()


@pytest.fixture
def client() -> Iterator[WebhookClient]:
    webhooks = WebhookClient(AUTH_TOKEN, 5.0)
    yield webhooks
    webhooks.close()


def test_webhook_redirects_are_followed(target: _Target, client: WebhookClient) -> None:
    kept = client.send(target.url + "/temporary", "POST", [("A", "1")])
    assert (kept.status_code, kept.body) == (200, "POST landed")
    changed = client.send(target.url + "/see-other", "POST", [("A", "1")])
    assert (changed.status_code, changed.body) == (200, "GET landed")
    assert target.seen == [
        ("POST", "/temporary?", b"A=1"),
        ("POST", "/landed?", b"A=1"),
        ("POST", "/see-other?", b"A=1"),
        ("GET", "/landed?", b""),
    ]


def test_webhook_gzip_answers_are_decoded(target: _Target, client: WebhookClient) -> None:
    result = client.send(target.url + "/zipped", "GET", [("A", "1")])
    assert result.ok and result.body == "<Response><Say>zipped</Say></Response>"
    assert result.content_type == "text/xml"


def test_webhook_unreachable_is_reported(client: WebhookClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = client.send(f"http://127.0.0.1:{port}/x", "POST", [("A", "1")])
    assert result.status_code is None and not result.ok
    assert result.error is not None and result.error.startswith("NewConnectionError: ")


class _RawServer:
    """Records raw requests; answers each, and closes the connection after ``per_connection``."""

    def __init__(self, per_connection: int) -> None:
        self.per_connection = per_connection
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as rfile:
                for _ in range(self.per_connection):
                    head = b""
                    while (line := rfile.readline()) not in (b"\r\n", b""):
                        head += line
                    if not head:
                        break
                    match = re.search(rb"Content-Length: (\d+)", head)
                    body = rfile.read(int(match[1])) if match else b""
                    self.requests.append(head + b"\r\n" + body)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


def test_webhook_reconnects_when_the_service_dropped_the_connection(
    client: WebhookClient,
) -> None:
    server = _RawServer(per_connection=1)  # closes without saying "Connection: close"
    try:
        for _ in range(3):
            assert client.send(server.url + "/x", "POST", [("A", "1")]).body == "ok"
            time.sleep(0.05)
        assert server.connections == 3
    finally:
        server.close()


def test_webhooks_share_one_kept_alive_connection(client: WebhookClient) -> None:
    server = _RawServer(per_connection=100)
    try:
        for path in ("/a", "/b", "/c"):
            assert client.send(server.url + path, "POST", [("A", "1")]).ok
        assert server.connections == 1
    finally:
        server.close()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_the_signature_is_what_the_twilio_sdk_expects(
    target: _Target, client: WebhookClient, method: str
) -> None:
    url = target.url + "/a/c?x=%41&y=1"
    params = [("To", "+1 555"), ("Body", "é & ü ~!*'()"), ("Digits", "1")]
    assert client.send(url, method, params).ok
    sent_method, full_path, body = target.seen[-1]
    headers = target.headers[-1]
    validator = RequestValidator(AUTH_TOKEN)
    if method == "POST":
        form = dict(parse_qsl(body.decode()))
        assert form == dict(params)
        assert validator.validate(url, form, headers["X-Twilio-Signature"])
        assert (
            validator.validate(url, {**form, "Digits": "2"}, headers["X-Twilio-Signature"]) is False
        )
    else:
        assert validator.validate(target.url + full_path, {}, headers["X-Twilio-Signature"])
    assert headers["User-Agent"] == "TwilioProxy/1.1" and headers["I-Twilio-Idempotency-Token"]
    assert sent_method == method


def test_webhook_timeout_is_reported() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/slow"
    client = WebhookClient(AUTH_TOKEN, 0.2)
    try:
        started = time.monotonic()
        result = client.send(url, "POST", [("A", "1")])
        assert time.monotonic() - started < 2
        assert result.status_code is None
        assert result.error is not None and result.error.startswith("ReadTimeoutError: ")
    finally:
        client.close()
        silent.close()


# --- the scheduler ----------------------------------------------------------------------------


def test_scheduler_runs_timers_in_order() -> None:
    scheduler = Scheduler(time_scale=100.0, workers=2)
    ran: list[str] = []
    finished = threading.Event()
    try:
        scheduler.call_later(3.0, lambda: (ran.append("c"), finished.set()))
        scheduler.call_later(1.0, lambda: ran.append("a"))
        scheduler.call_later(2.0, lambda: ran.append("b"))
        assert finished.wait(5)
        assert ran == ["a", "b", "c"]
    finally:
        scheduler.shutdown()


def test_stop_ends_the_emulator_even_if_its_trigger_is_already_closed(
    make_emulator: Callable[..., RunningEmulator],
) -> None:
    emulator = make_emulator()
    # As once seen in a teardown (stop() then raised EBADF). Closed by the loop's own thread:
    # closed from this one, between the loop listing its sockets and its select(), the loop
    # failed on the closed pipe before stop() had begun (one full run in several).
    trigger = emulator.server.trigger
    trigger.pull_trigger(trigger.close)
    deadline = time.monotonic() + 5
    while not trigger._closed and time.monotonic() < deadline:
        time.sleep(0.005)
    assert trigger._closed
    emulator.stop()
    assert not emulator.thread.is_alive()
    emulator.stop()  # a second stop does nothing
