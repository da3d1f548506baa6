"""The no-op ceiling: a tiny Flask app answering JSON, served as the product is (``served.py``).

It doubles as the status-callback sink of the dispatch and pacing runs: it answers any path.

    python -m scripts.benchlib.noop --port 8099 [--workers 2 --threads 4]
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from .served import arguments, serve_instead


def create_noop_app() -> Flask:
    app = Flask("noop")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    def anything(path: str) -> Response:
        request.get_data()  # read the body as the intake endpoint does
        return jsonify({"status": "ok"})

    return app


def main() -> None:
    serve_instead(create_noop_app, arguments().parse_args())


if __name__ == "__main__":
    main()
