"""The write floor: the least a request that stores a warning durably costs on this stack.

The intake target compares the intake with the no-op, which stores nothing. This app sits in
between. Per request it reads the body and parses the JSON, looks the API key up with the
product's own statement (``robot.sources.find_by_key``), and stores the body as one row,
committed before the answer. That is one read and one write, the fewest any intake can do. On
PostgreSQL the write is a single autocommitted statement, as a lone warning's is (item 38). On
SQLite it is the product's own write transaction, BEGIN IMMEDIATE included.

What it leaves out is the product's own work: validation, phonenumbers, cases, events, the
wake-up, and grouping commits under load. A floor far below 50% of the no-op means the
target asks for less than one read and one commit cost on this machine. The intake's share of
the floor is then the part of the gap that is the product's.

Served by ``robot.serve.serve_web`` with the product's gunicorn settings, as the no-op is:

    python -m scripts.benchlib.floor --port 8098 [--workers 2 --threads 4]

The database is the one the settings name (``ROBOT_DATABASE_URL``). Its sources table must
exist; :func:`create_floor_table` adds the floor's own.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, Table, Text, insert

from robot.config import Settings
from robot.db import create_db_engine, is_postgres, read_connection
from robot.sources import find_by_key

_metadata = MetaData()
_floor = Table(
    "bench_floor",
    _metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("external_id", Text, nullable=False),
    Column("body", Text, nullable=False),
)
_INSERT = insert(_floor)


def create_floor_table(engine: Engine) -> None:
    _metadata.create_all(engine)


def floor_table() -> Table:
    return _floor


def create_floor_app(settings: Settings) -> Flask:
    engine = create_db_engine(settings.database)
    # PostgreSQL: one statement, committed by itself (no BEGIN, no COMMIT round trips).
    write_options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if is_postgres(engine) else {}
    app = Flask("floor")

    @app.post("/api/v1/warnings")
    def store() -> tuple[Response, int]:
        body = request.get_data()
        try:
            external_id = str(json.loads(body)["external_id"])
        except (ValueError, KeyError, TypeError):
            return jsonify({"error": "body: expected a JSON object with external_id"}), 400
        _, _, key = request.headers.get("Authorization", "").partition(" ")
        with read_connection(engine) as conn:
            if find_by_key(conn, key.strip()) is None:
                return jsonify({"error": "Authorization: unknown API key"}), 401
        with engine.connect().execution_options(**write_options) as conn:
            conn.execute(_INSERT, {"external_id": external_id, "body": body.decode()})
            conn.commit()
        return jsonify({"status": "stored", "external_id": external_id}), 202

    @app.get("/healthz")
    def healthz() -> Response:
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

    def create_app(settings: Settings | None = None, **_kwargs: Any) -> Flask:
        return create_floor_app(settings or load_settings())

    robot.app.create_app = create_app
    serve_web(load_settings(), args.host, args.port, args.workers, args.threads)


if __name__ == "__main__":
    main()
