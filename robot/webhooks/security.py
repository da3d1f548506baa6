"""X-Twilio-Signature checks against the configured public URL, for every accepted token."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import request

from robot.api.errors import ApiError
from robot.app import services
from robot.providers.twilio import SignatureChecker

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def _checker() -> SignatureChecker:
    svc = services()
    checker = svc.extras.get("signature_checker")
    if checker is None:
        twilio = svc.settings.twilio
        # Rotation: the current token and every previous one still accepted.
        tokens = [twilio.auth_token, *twilio.previous_auth_tokens]
        checker = svc.extras["signature_checker"] = SignatureChecker(tokens)
    assert isinstance(checker, SignatureChecker)
    return checker


def public_url() -> str:
    """The URL Twilio signed: our public base URL, not what a proxy forwarded to us."""
    base = services().settings.server.public_base_url.rstrip("/")
    query = request.query_string.decode()
    return base + request.path + (f"?{query}" if query else "")


def twilio_signed(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signature = request.headers.get("X-Twilio-Signature")
        if not _checker().valid(public_url(), request.form, signature):
            # Log the path only: the body carries phone numbers.
            log.warning(
                "refused a webhook with a %s signature on %s",
                "bad" if signature else "missing",
                request.path,
            )
            raise ApiError(
                403,
                "bad_signature",
                "X-Twilio-Signature is missing or does not match",
                field="X-Twilio-Signature",
            )
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
