"""JSON shapes: Twilio's Call/Message resources and pages, and the control API's detail views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from robot.emulator.formats import API_VERSION, rfc2822
from robot.emulator.records import (
    CallRecord,
    Event,
    MessageRecord,
    Params,
    RequestRecord,
    WebhookRecord,
)

JSON = dict[str, Any]

CALL_SUBRESOURCES = (
    "feedback",
    "user_defined_messages",
    "notifications",
    "recordings",
    "streams",
    "payments",
    "user_defined_message_subscriptions",
    "siprec",
    "events",
    "transcriptions",
)

#: (name, "CamelName") of each subresource, worked out once.
_CALL_SUBRESOURCE_PATHS = tuple(
    (name, "".join(part.capitalize() for part in name.split("_"))) for name in CALL_SUBRESOURCES
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def account_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}"


def params_json(params: Params) -> dict[str, str | list[str]]:
    """Form fields as a dict; a repeated name maps to the list of its values."""
    out: dict[str, str | list[str]] = {}
    for name, value in params:
        if name not in out:
            out[name] = value
        else:
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
    return out


# --- Twilio resources ---------------------------------------------------------------------


def call_json(call: CallRecord) -> JSON:
    base = f"{account_path(call.account_sid)}/Calls/{call.sid}"
    return {
        "account_sid": call.account_sid,
        "annotation": None,
        "answered_by": call.answered_by,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "direction": call.direction,
        "duration": None if call.duration is None else str(call.duration),
        "end_time": rfc2822(call.end_time),
        "error_code": call.error_code,
        "error_message": call.error_message,
        "forwarded_from": None,
        "from": call.from_,
        "from_formatted": call.from_,
        "group_sid": None,
        "parent_call_sid": call.parent_call_sid,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": rfc2822(call.start_time),
        "status": call.status,
        "subresource_uris": {
            name: f"{base}/{camel}.json" for name, camel in _CALL_SUBRESOURCE_PATHS
        },
        "to": call.to,
        "to_formatted": call.to,
        "trunk_sid": None,
        "uri": f"{base}.json",
    }


def message_json(message: MessageRecord) -> JSON:
    base = f"{account_path(message.account_sid)}/Messages/{message.sid}"
    return {
        "account_sid": message.account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": rfc2822(message.date_created),
        "date_sent": rfc2822(message.date_sent),
        "date_updated": rfc2822(message.date_updated),
        "direction": message.direction,
        "error_code": message.error_code,
        "error_message": message.error_message,
        "from": message.from_,
        "messaging_service_sid": message.messaging_service_sid,
        "num_media": "0",
        "num_segments": str(message.num_segments),
        "price": None,
        "price_unit": "USD",
        "sid": message.sid,
        "status": message.status,
        "subresource_uris": {
            "media": f"{base}/Media.json",
            "feedback": f"{base}/Feedback.json",
        },
        "to": message.to,
        "uri": f"{base}.json",
    }


def page_json(
    key: str, items: Sequence[JSON], path: str, filters: Params, page: int, page_size: int
) -> JSON:
    """A Twilio list page; page URIs are relative, as the SDK's paging expects."""
    page_size = max(1, min(MAX_PAGE_SIZE, page_size))
    page = max(0, page)
    start = page * page_size
    chunk = list(items[start : start + page_size])

    def uri(number: int) -> str:
        return (
            path + "?" + urlencode([*filters, ("PageSize", str(page_size)), ("Page", str(number))])
        )

    return {
        key: chunk,
        "end": start + max(0, len(chunk) - 1),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if start + page_size < len(items) else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": uri(page),
    }


# --- control API --------------------------------------------------------------------------


def event_json(event: Event) -> JSON:
    return {
        "time": event.time,
        "timestamp": rfc2822(event.time),
        "status": event.status,
        "detail": event.detail,
    }


def webhook_json(record: WebhookRecord) -> JSON:
    return {
        "kind": record.kind,
        "event": record.event,
        "url": record.url,
        "method": record.method,
        "params": params_json(record.params),
        "time": record.time,
        "status_code": record.status_code,
        "error": record.error,
        "response_body": record.response_body,
    }


def call_detail(call: CallRecord) -> JSON:
    """The Call resource plus everything the emulator saw and did for it."""
    return {
        **call_json(call),
        "callee": call.callee.text,
        "request": {
            "url": call.url,
            "method": call.method,
            "twiml": call.twiml,
            "status_callback": call.status_callback,
            "status_callback_method": call.status_callback_method,
            "status_callback_events": sorted(call.status_callback_events),
            "timeout": call.timeout,
            "time_limit": call.time_limit,
            "machine_detection": call.machine_detection,
            "async_amd": call.async_amd,
            "async_amd_status_callback": call.amd_callback,
        },
        "sip_response_code": call.sip_response_code,
        "events": [event_json(e) for e in call.events],
        "documents": [webhook_json(d) for d in call.documents],
        "callbacks": [webhook_json(c) for c in call.callbacks],
        "digits": [
            {"time": d.time, "gather_index": d.gather_index, "digits": d.digits}
            for d in call.digits
        ],
    }


def message_detail(message: MessageRecord) -> JSON:
    return {
        **message_json(message),
        "callee": message.callee_text,
        "status_callback": message.status_callback,
        "validity_period": message.validity_period,
        "events": [event_json(e) for e in message.events],
        "callbacks": [webhook_json(c) for c in message.callbacks],
    }


def request_json(record: RequestRecord) -> JSON:
    return {
        "time": record.time,
        "timestamp": rfc2822(record.time),
        "method": record.method,
        "path": record.path,
        "query": params_json(record.query),
        "params": params_json(record.params),
        "status": record.status,
        "auth_user": record.auth_user,
        "sid": record.sid,
    }
