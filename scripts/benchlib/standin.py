"""A provider stand-in: answers the worker's call and message creates and does nothing else.

The dispatch target is the worker's rate, but against the emulator the emulator is the busiest
process: one process, several CPU-ms an attempt (it keeps every call and sends its callbacks),
on the same two cores as the worker. Twilio costs the worker's machine nothing. Against this
stand-in, which answers a create with a sid and nothing else (no Flask, nothing kept, no
callbacks), what is left is the worker's own cost and rate: the twilio SDK over HTTP,
the claims and the writes.

Served as the product is, like the no-op (``served.py``):

    python -m scripts.benchlib.standin --port 8097 [--workers 2 --threads 4]
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from .served import arguments, serve_instead

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_KINDS = {"/Calls.json": "CA", "/Messages.json": "SM"}


def create_standin_app() -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A bare WSGI app: Flask's routing and request objects would cost more than the answer."""
    # Unique sids across the served processes: the attempts' provider_sid column is unique.
    sids = itertools.count()
    process = os.getpid()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)  # the connection is kept alive: drain the body
        path: str = environ.get("PATH_INFO", "")
        kind = next((k for suffix, k in _KINDS.items() if path.endswith(suffix)), None)
        body: dict[str, Any]
        if environ.get("REQUEST_METHOD") == "POST" and kind:
            status = "201 Created"
            body = {"sid": f"{kind}{process:08x}{next(sids):024x}", "status": "queued"}
        elif path == "/healthz":
            status, body = "200 OK", {"status": "ok"}
        else:
            status, body = "404 Not Found", {"code": 20404, "message": "not found", "status": 404}
        payload = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        start_response(status, headers)
        return [payload]

    return app


def main() -> None:
    serve_instead(create_standin_app, arguments().parse_args())


if __name__ == "__main__":
    main()
