"""The emulator's own JSON API under ``/_emulator/`` (no auth): inspect, reset, steer."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from robot.emulator.callees import parse_keys
from robot.emulator.calls import start_inbound_call
from robot.emulator.formats import is_e164
from robot.emulator.messages import receive_sms
from robot.emulator.resources import call_detail, message_detail, request_json
from robot.emulator.state import EmulatorState

control = Blueprint("emulator_control", __name__, url_prefix="/_emulator")

#: Longest ``?wait=`` a status query may block for.
MAX_WAIT_SECONDS = 60.0


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def emulator() -> EmulatorState:
    state: EmulatorState = current_app.extensions["emulator"]
    return state


@control.errorhandler(ControlError)
def control_error(error: ControlError) -> Response:
    response = jsonify({"error": error.message})
    response.status_code = error.status
    return response


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ControlError(400, "expected a JSON object")
    return body


def _wait_seconds() -> float:
    try:
        return max(0.0, min(MAX_WAIT_SECONDS, float(request.args.get("wait", 0))))
    except ValueError:
        raise ControlError(400, "wait must be a number of seconds") from None


@control.get("/health")
def health() -> Response:
    state = emulator()
    with state.lock:
        return jsonify(
            {
                "status": "ok",
                "calls": len(state.calls),
                "active_calls": state.active_calls,
                "messages": len(state.messages),
                "requests": len(state.requests),
                "time_scale": state.settings.time_scale,
            }
        )


@control.get("/calls")
def calls() -> Response:
    state = emulator()
    to = request.args.get("to")
    with state.lock:
        return jsonify([call_detail(c) for c in state.calls.values() if to is None or c.to == to])


@control.get("/calls/<sid>")
def call(sid: str) -> Response:
    """One call; ``?wait=N`` blocks up to N seconds for it to reach a terminal status."""
    state = emulator()
    wait = _wait_seconds()
    with state.lock:
        record = state.calls.get(sid)
        if record is None:
            raise ControlError(404, f"no call {sid}")
        if wait:
            state.wait_for(lambda: record.terminal, wait)
        return jsonify(call_detail(record))


@control.get("/messages")
def messages() -> Response:
    state = emulator()
    to = request.args.get("to")
    with state.lock:
        return jsonify(
            [message_detail(m) for m in state.messages.values() if to is None or m.to == to]
        )


@control.get("/messages/<sid>")
def message(sid: str) -> Response:
    """One message; ``?wait=N`` blocks up to N seconds for a terminal status."""
    state = emulator()
    wait = _wait_seconds()
    with state.lock:
        record = state.messages.get(sid)
        if record is None:
            raise ControlError(404, f"no message {sid}")
        if wait:
            state.wait_for(lambda: record.terminal, wait)
        return jsonify(message_detail(record))


@control.get("/requests")
def requests_() -> Response:
    state = emulator()
    with state.lock:
        return jsonify([request_json(r) for r in state.requests])


@control.post("/reset")
def reset() -> Response:
    emulator().reset()
    return jsonify({"status": "reset"})


@control.get("/callees")
def callees() -> Response:
    state = emulator()
    with state.lock:
        return jsonify(dict(state.overrides))


@control.post("/callees")
def set_callees() -> Response:
    body = _json_body()
    items = [(str(k), v) for k, v in body.items()]
    if not all(isinstance(v, str) for _, v in items):
        raise ControlError(400, "behaviours must be strings")
    try:
        emulator().set_callees(items)
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    return callees()


@control.post("/faults")
def faults() -> Response:
    """``{"kind": "calls"|"messages", "count": N, "status": 500|429|503, "code": optional}``."""
    body = _json_body()
    state = emulator()
    try:
        kind = str(body.get("kind", ""))
        count = int(body.get("count", 1))
        status = int(body.get("status", 500))
        code = int(body["code"]) if body.get("code") is not None else None
        with state.lock:
            state.faults.add(kind, count, status, code)
            pending = state.faults.pending()
    except (TypeError, ValueError) as exc:
        raise ControlError(400, str(exc)) from None
    return jsonify({"pending": pending})


def _numbers(body: dict[str, Any]) -> tuple[str, str]:
    from_, to = body.get("from"), body.get("to")
    if not isinstance(from_, str) or not isinstance(to, str) or not is_e164(from_):
        raise ControlError(400, "'from' (E.164) and 'to' are required")
    return from_, to


@control.post("/inbound/sms")
def inbound_sms() -> Response:
    """``{from, to, body, url?}``: deliver an SMS to the service; returns what it answered."""
    body = _json_body()
    state = emulator()
    from_, to = _numbers(body)
    text = body.get("body", "")
    url = body.get("url") or state.settings.inbound_sms_url
    if not isinstance(text, str) or not isinstance(url, str) or not url:
        raise ControlError(400, "'body' must be a string and an inbound SMS URL configured")
    result = receive_sms(state, from_, to, text, url)
    return jsonify(
        {
            "sid": result.message.sid,
            "status_code": result.response.status_code,
            "content_type": result.response.content_type,
            "body": result.response.body,
            "error": result.response.error,
            "replies": [r.body for r in result.replies],
        }
    )


@control.post("/inbound/call")
def inbound_call() -> Response:
    """``{from, to, digits?, url?}``: a person calls the service and presses ``digits``.

    ``digits`` is what to press on successive gathers, e.g. ``"1"`` or ``"9,1"``. The answer
    holds the call SID; ``GET /_emulator/calls/<sid>?wait=10`` waits for the call to end.
    """
    body = _json_body()
    state = emulator()
    from_, to = _numbers(body)
    digits = body.get("digits") or ""
    url = body.get("url") or state.settings.inbound_voice_url
    if not isinstance(digits, str) or not isinstance(url, str) or not url:
        raise ControlError(400, "'digits' must be a string and an inbound voice URL configured")
    try:
        keys = parse_keys(digits)
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    record = start_inbound_call(state, from_, to, keys, url)
    response = jsonify({"sid": record.sid, "status": "ringing"})
    response.status_code = 201
    return response
