"""The Twilio REST API subset: ``/2010-04-01/Accounts/{AccountSid}/Calls|Messages``."""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.datastructures import Authorization

from robot.emulator.calls import create_call, update_call
from robot.emulator.errors import ApiError, authentication_failed, not_found
from robot.emulator.messages import create_message
from robot.emulator.records import RequestRecord
from robot.emulator.resources import (
    DEFAULT_PAGE_SIZE,
    call_json,
    message_json,
    page_json,
)
from robot.emulator.state import EmulatorState

api = Blueprint("twilio_api", __name__, url_prefix="/2010-04-01/Accounts/<account_sid>")


def emulator() -> EmulatorState:
    state: EmulatorState = current_app.extensions["emulator"]
    return state


def _authorised(state: EmulatorState, account_sid: str, auth: Authorization | None) -> bool:
    if auth is None or auth.type != "basic" or account_sid != state.settings.account_sid:
        return False
    user, password = auth.username or "", auth.password or ""
    s = state.settings
    if user == s.account_sid and hmac.compare_digest(password.encode(), s.auth_token.encode()):
        return True
    return bool(
        s.api_key_sid
        and user == s.api_key_sid
        and hmac.compare_digest(password.encode(), s.api_key_secret.encode())
    )


@api.before_request
def authenticate() -> None:
    g.emulator_started = time.time()
    g.emulator_auth = auth = request.authorization  # parsed once; record() reads it too
    account_sid = (request.view_args or {}).get("account_sid", "")
    if not _authorised(emulator(), account_sid, auth):
        raise authentication_failed()


@api.after_request
def record(response: Response) -> Response:
    state = emulator()
    auth = g.emulator_auth if "emulator_auth" in g else request.authorization
    entry = RequestRecord(
        time=g.get("emulator_started", time.time()),
        method=request.method,
        path=request.path,
        query=list(request.args.items(multi=True)),
        params=list(request.form.items(multi=True)),
        status=response.status_code,
        auth_user=auth.username if auth is not None else None,
        sid=g.get("emulator_sid"),
    )
    with state.lock:
        state.requests.append(entry)
    if state.heap is not None:
        state.heap.added()
    return response


@api.errorhandler(ApiError)
def api_error(error: ApiError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return response


def _page_args() -> tuple[int, int]:
    try:
        size = int(request.args.get("PageSize", DEFAULT_PAGE_SIZE))
        page = int(request.args.get("Page", 0))
    except ValueError:
        raise ApiError(400, 20001, "PageSize and Page must be integers") from None
    return page, size


# --- calls --------------------------------------------------------------------------------


@api.post("/Calls.json")
def calls_create(account_sid: str) -> tuple[Response, int]:
    call = create_call(emulator(), account_sid, request.form)
    g.emulator_sid = call.sid
    with emulator().lock:
        body = call_json(call)
    return jsonify(body), 201


@api.get("/Calls.json")
def calls_list(account_sid: str) -> Response:
    state = emulator()
    filters = [
        (name, request.args[name])
        for name in ("To", "From", "Status", "ParentCallSid")
        if request.args.get(name)
    ]
    wanted = {"To": "to", "From": "from_", "Status": "status", "ParentCallSid": "parent_call_sid"}
    with state.lock:
        calls = [
            c
            for c in reversed(state.calls.values())
            if all(getattr(c, wanted[name]) == value for name, value in filters)
        ]
        items = [call_json(c) for c in calls]
    page, size = _page_args()
    return jsonify(page_json("calls", items, request.path, filters, page, size))


@api.get("/Calls/<sid>.json")
def calls_fetch(account_sid: str, sid: str) -> Response:
    state = emulator()
    with state.lock:
        call = state.calls.get(sid)
        if call is None:
            raise not_found(request.path)
        return jsonify(call_json(call))


@api.post("/Calls/<sid>.json")
def calls_update(account_sid: str, sid: str) -> Response:
    state = emulator()
    call = update_call(state, sid, request.form)
    with state.lock:
        return jsonify(call_json(call))


# --- messages -----------------------------------------------------------------------------


@api.post("/Messages.json")
def messages_create(account_sid: str) -> tuple[Response, int]:
    state = emulator()
    message = create_message(state, account_sid, request.form)
    g.emulator_sid = message.sid
    with state.lock:
        body = message_json(message)
    return jsonify(body), 201


@api.get("/Messages.json")
def messages_list(account_sid: str) -> Response:
    state = emulator()
    filters = [(name, request.args[name]) for name in ("To", "From") if request.args.get(name)]
    wanted = {"To": "to", "From": "from_"}
    with state.lock:
        items = [
            message_json(m)
            for m in reversed(state.messages.values())
            if all(getattr(m, wanted[name]) == value for name, value in filters)
        ]
    page, size = _page_args()
    return jsonify(page_json("messages", items, request.path, filters, page, size))


@api.get("/Messages/<sid>.json")
def messages_fetch(account_sid: str, sid: str) -> Response:
    state = emulator()
    with state.lock:
        message = state.messages.get(sid)
        if message is None:
            raise not_found(request.path)
        return jsonify(message_json(message))
