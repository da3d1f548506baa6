"""Bench apps served the product's way: ``robot.serve.serve_web`` with ``create_app`` swapped.

``serve_web`` builds the product's gunicorn configuration and imports ``create_app`` when it
starts, so swapping that one function keeps every gunicorn setting identical (bind, workers,
threads, worker class, keep-alive) without bench routes in the product. The no-op
(``noop.py``) and the write floor (``floor.py``) run this way.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any


def arguments() -> argparse.ArgumentParser:
    """The options every served bench app takes (a module may add its own)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    return parser


def serve_instead(make_app: Callable[[], Any], args: argparse.Namespace) -> None:
    """Serve ``make_app()``, a WSGI app built in each gunicorn process, in place of the
    product's."""
    import robot.app
    from robot.config import load_settings
    from robot.serve import serve_web

    def create_app(*_args: Any, **_kwargs: Any) -> Any:
        return make_app()

    robot.app.create_app = create_app
    # The [server] settings the bench gives the web (reuse_port), and nothing else of the product's.
    server_env = {k: v for k, v in os.environ.items() if k.startswith("ROBOT_SERVER_")}
    serve_web(load_settings(environ=server_env), args.host, args.port, args.workers, args.threads)
