"""The no-op ceiling: a tiny Flask app answering JSON, served by ``robot.serve.serve_web`` itself.

``serve_web`` builds the product's gunicorn configuration and imports ``create_app`` when it
starts; swapping that one function for the no-op app keeps every gunicorn setting identical
(bind, workers, threads, worker class, keep-alive) without a no-op route in the product.

It doubles as the status-callback sink of the dispatch and pacing runs: it answers any path.

    python -m scripts.benchlib.noop --port 8099 [--workers 2 --threads 4]
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask, Response, jsonify, request


def create_noop_app() -> Flask:
    app = Flask("noop")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    def anything(path: str) -> Response:
        request.get_data()  # read the body as the intake endpoint does
        return jsonify({"status": "ok"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    import robot.app
    from robot.config import load_settings
    from robot.serve import serve_web

    def create_app(*_args: Any, **_kwargs: Any) -> Flask:
        return create_noop_app()

    robot.app.create_app = create_app
    serve_web(load_settings(environ={}), args.host, args.port, args.workers, args.threads)


if __name__ == "__main__":
    main()
