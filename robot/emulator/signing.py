"""X-Twilio-Signature, computed exactly as Twilio's RequestValidator expects it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """base64(HMAC-SHA1(token, url + sorted names, each followed by its sorted distinct values)).

    ``url`` is the full URL requested, query string included; ``params`` are the POST form
    fields (pass none for a GET). Repeated names follow the SDK: every distinct value of a
    name is appended, in sorted order.
    """
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    payload = url
    for name in sorted(values):
        for value in sorted(values[name]):
            payload += name + value
    digest = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
