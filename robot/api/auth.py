"""Authenticate the source of an intake or case request."""

from __future__ import annotations

import time

from flask import request
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from robot.api.errors import ApiError
from robot.sources import Caller, find_by_key, verify_body_signature


def authenticate(db: Session | Connection) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise ApiError(401, "unauthorized", "missing API key", field="Authorization")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "expected 'Bearer <API key>'", field="Authorization")
    source = find_by_key(db, key.strip())
    if source is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", field="Authorization")
    return source


def check_signature(source: Caller, body: bytes, window: int) -> None:
    """Verify the optional body signature; required for sources that enabled it."""
    timestamp = request.headers.get("X-Robot-Timestamp")
    signature = request.headers.get("X-Robot-Signature")
    if not source.require_signature and not signature:
        return
    if not source.signing_secret:
        raise ApiError(
            401, "bad_signature", "this source has no signing secret", field="X-Robot-Signature"
        )
    problem = verify_body_signature(
        source.signing_secret, timestamp, signature, body, time.time(), window
    )
    if problem is not None:
        field, _, message = problem.partition(": ")
        raise ApiError(401, "bad_signature", message, field=field)
