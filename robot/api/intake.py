"""POST /api/v1/warnings: one warning or {"warnings": [...]}, authenticated per source."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from robot.api.auth import authenticate, check_signature
from robot.api.errors import ApiError
from robot.app import services
from robot.db import read_connection
from robot.intake.service import Accepted, Status
from robot.intake.validation import FieldError, validate_warning
from robot.models import utcnow

bp = Blueprint("intake", __name__)

_HTTP_STATUS = {Status.CREATED: 202, Status.MERGED: 202, Status.DUPLICATE: 200}


@bp.post("/api/v1/warnings")
def post_warnings() -> Response:
    svc = services()
    settings = svc.settings
    with read_connection(svc.engine) as conn:
        source = authenticate(conn)
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json", field="Content-Type")
    body = request.get_data(cache=False)
    check_signature(source, body, settings.intake.signature_window_seconds)
    document = _parse(body)
    items, batch = _items(document, settings.intake.max_batch)

    with svc.intake_writer.batch_turn(len(items)):
        now = utcnow()
        checked = [validate_warning(item, settings.intake.default_region, now) for item in items]
        valid = [item for item in checked if not isinstance(item, list)]
        # Committed when this returns; concurrent small requests share one transaction.
        outcomes = svc.intake_writer.store(source, valid)
    results: list[dict[str, Any]] = []
    accepted = iter(outcomes)
    for index, item in enumerate(checked):
        if isinstance(item, list):
            results.append(_rejected(item, index if batch else None))
        else:
            results.append(_result(next(accepted), index if batch else None))
    return _respond(results, batch)


def _parse(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, "malformed_json", "the body is empty", field="body")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "the body is not UTF-8", field="body") from None
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ApiError(400, "malformed_json", message, field="body") from None


def _items(document: Any, limit: int) -> tuple[list[Any], bool]:
    if isinstance(document, dict) and "warnings" in document:
        extra = sorted(set(document) - {"warnings"})
        if extra:
            raise ApiError(
                422, "invalid_fields", "unexpected key beside 'warnings'", field=extra[0]
            )
        items = document["warnings"]
        if not isinstance(items, list) or not items:
            raise ApiError(422, "invalid_fields", "must be a non-empty list", field="warnings")
        if len(items) > limit:
            raise ApiError(
                413, "too_large", f"at most {limit} warnings per request", field="warnings"
            )
        return items, True
    if not isinstance(document, dict):
        raise ApiError(
            422, "invalid_fields", 'expected a warning object or {"warnings": [...]}', field="body"
        )
    return [document], False


def _rejected(errors: list[FieldError], index: int | None) -> dict[str, Any]:
    fields = [error.as_dict() for error in errors]
    if index is not None:
        for entry in fields:
            entry["field"] = f"warnings[{index}].{entry['field']}"
            entry["index"] = index
    return {"status": "rejected", "http_status": 422, "errors": fields, "index": index}


def _result(outcome: Accepted, index: int | None) -> dict[str, Any]:
    return {
        "status": outcome.status.value,
        "http_status": _HTTP_STATUS[outcome.status],
        "case_id": outcome.case_id,
        "index": index,
    }


def _respond(results: list[dict[str, Any]], batch: bool) -> Response:
    if not batch:
        only = results[0]
        if only["status"] == "rejected":
            raise ApiError(
                422, "invalid_fields", "the warning has invalid fields", fields=only["errors"]
            )
        del only["index"]
        response = jsonify(only)
        response.status_code = only["http_status"]
        return response
    counts = {
        "accepted": sum(r["status"] in ("created", "merged") for r in results),
        "duplicates": sum(r["status"] == "duplicate" for r in results),
        "rejected": sum(r["status"] == "rejected" for r in results),
    }
    if counts["accepted"]:
        status = 202
    elif counts["rejected"]:
        status = 422
    else:
        status = 200
    body: dict[str, Any] = {**counts, "results": results}
    if status == 422:
        fields = [error for r in results for error in r.get("errors", [])]
        body["error"] = {
            "code": "invalid_fields",
            "message": "no warning in the batch was valid",
            "fields": fields,
        }
    response = jsonify(body)
    response.status_code = status
    return response
