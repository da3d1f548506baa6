"""Call operations behind the REST and control APIs: create, update, inbound."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from werkzeug.datastructures import MultiDict

from robot.emulator.callees import Callee, call_behaviour_for
from robot.emulator.callflow import inbound, outbound, start
from robot.emulator.errors import ApiError, too_many_requests
from robot.emulator.formats import is_e164, new_sid
from robot.emulator.records import CallRecord, Update
from robot.emulator.state import EmulatorState

STATUS_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
MAX_TIMEOUT = 600
DEFAULT_TIMEOUT = 60
DEFAULT_TIME_LIMIT = 14400


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        number = default
    return min(high, max(low, number))


def _method(value: str | None) -> str:
    return "GET" if (value or "").strip().upper() == "GET" else "POST"


def create_call(state: EmulatorState, account_sid: str, form: MultiDict[str, str]) -> CallRecord:
    """``POST …/Calls.json``: validate, apply faults and limits, start the simulation."""
    fields = form.to_dict()  # first values; a MultiDict raises (costly) on every absent key
    with state.lock:
        fault = state.faults.take("calls")
    if fault is not None:
        raise fault
    to = fields.get("To", "").strip()
    from_ = fields.get("From", "").strip()
    url = fields.get("Url", "").strip()
    twiml = fields.get("Twiml", "")
    if not to:
        raise ApiError(400, 21201, "No 'To' number is specified")
    if not is_e164(to):
        raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not from_:
        raise ApiError(400, 21213, "No 'From' number is specified")
    if not url and not twiml.strip() and not fields.get("ApplicationSid"):
        raise ApiError(400, 21205, "Url parameter is required")
    if url and not _is_url(url):
        raise ApiError(400, 21205, f"Url is not a valid URL: {url}")
    status_callback = fields.get("StatusCallback", "").strip()
    if status_callback and not _is_url(status_callback):
        raise ApiError(400, 21609, f"StatusCallback is not a valid URL: {status_callback}")
    amd_callback = fields.get("AsyncAmdStatusCallback", "").strip()
    if amd_callback and not _is_url(amd_callback):
        raise ApiError(400, 21609, f"AsyncAmdStatusCallback is not a valid URL: {amd_callback}")
    requested = {
        word.lower() for value in form.getlist("StatusCallbackEvent") for word in value.split()
    }
    events = frozenset(requested & STATUS_EVENTS)
    with state.lock:
        callee = call_behaviour_for(to, state.overrides)
    if callee.kind == "invalid":
        raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    limits = state.settings
    with state.changed:
        if limits.max_concurrent_calls and state.active_calls >= limits.max_concurrent_calls:
            raise too_many_requests()
        if not state.rate.try_acquire(time.monotonic()):
            raise too_many_requests()
        call = CallRecord(
            sid=new_sid("CA"),
            account_sid=account_sid,
            to=to,
            from_=from_,
            direction="outbound-api",
            callee=callee,
            url=url or None,
            method=_method(fields.get("Method")),
            twiml=None if url else twiml,
            status_callback=status_callback or None,
            status_callback_method=_method(fields.get("StatusCallbackMethod")),
            status_callback_events=events or frozenset({"completed"}),
            timeout=_int(fields.get("Timeout"), DEFAULT_TIMEOUT, 1, MAX_TIMEOUT),
            time_limit=_int(fields.get("TimeLimit"), DEFAULT_TIME_LIMIT, 1, DEFAULT_TIME_LIMIT),
            machine_detection=fields.get("MachineDetection", "").strip() or None,
            async_amd=fields.get("AsyncAmd", "").strip().lower() == "true",
            amd_callback=amd_callback or None,
            amd_callback_method=_method(fields.get("AsyncAmdStatusCallbackMethod")),
            generation=state.generation,
            counts_as_active=True,
        )
        call.add_event("queued")
        state.calls[call.sid] = call
        state.active_calls += 1
        state.changed.notify_all()
    start(state, call, outbound)
    return call


def update_call(state: EmulatorState, sid: str, form: MultiDict[str, str]) -> CallRecord:
    """``POST …/Calls/{Sid}.json``: hang up, cancel or redirect a call."""
    fields = form.to_dict()
    status = fields.get("Status", "").strip().lower()
    url = fields.get("Url", "").strip()
    twiml = fields.get("Twiml", "")
    method = _method(fields.get("Method"))
    if status and status not in ("canceled", "completed"):
        raise ApiError(400, 21218, f"Status must be 'canceled' or 'completed', not {status!r}")
    if url and not _is_url(url):
        raise ApiError(400, 21205, f"Url is not a valid URL: {url}")
    with state.changed:
        call = state.calls.get(sid)
        if call is None:
            raise ApiError(404, 20404, f"The requested resource Calls/{sid} was not found")
        wake = None
        if fields.get("StatusCallback"):
            call.status_callback = fields["StatusCallback"].strip()
            call.status_callback_method = _method(fields.get("StatusCallbackMethod"))
        if status:
            if call.terminal or (status == "canceled" and call.status == "in-progress"):
                call.add_event("update", f"Status={status} ignored in {call.status}")
            else:
                call.hangup_requested = True
                call.add_event("update", f"Status={status}")
                wake = call.wake
        elif url or twiml.strip():
            if call.terminal:
                raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
            update = Update(url or None, method, None if url else twiml)
            if call.status == "in-progress":
                call.pending_update = update
                wake = call.wake
            else:  # not answered yet: the new TwiML is what plays on answer
                call.url, call.method, call.twiml = update.url, update.method, update.twiml
            call.add_event("update", url or "Twiml")
        state.changed.notify_all()
    if wake is not None:
        wake()
    return call


def start_inbound_call(
    state: EmulatorState, from_: str, to: str, keys: tuple[str, ...], url: str
) -> CallRecord:
    """A person calls ``to`` (the service's number) and presses ``keys`` on its gathers."""
    with state.changed:
        call = CallRecord(
            sid=new_sid("CA"),
            account_sid=state.settings.account_sid,
            to=to,
            from_=from_,
            direction="inbound",
            callee=Callee("human", keys, "human:" + ",".join(keys)),
            status="ringing",
            url=url,
            status_callback_events=frozenset(),
            generation=state.generation,
        )
        call.add_event("ringing", "inbound")
        state.calls[call.sid] = call
        state.changed.notify_all()
    start(state, call, lambda run: inbound(run, url))
    return call
