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

Served with the product's gunicorn settings, as the no-op is (``served.py``):

    python -m scripts.benchlib.floor --port 8098 --database-url URL [--workers 2 --threads 4]

The database's sources table must exist; :func:`create_floor_table` adds the floor's own.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, Table, Text, insert

from robot.config import DatabaseSettings
from robot.db import create_db_engine, is_postgres, read_connection
from robot.sources import find_by_key

from .served import arguments, serve_instead

_metadata = MetaData()
FLOOR_TABLE = Table(
    "bench_floor",
    _metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("external_id", Text, nullable=False),
    Column("body", Text, nullable=False),
)
_INSERT = insert(FLOOR_TABLE)


def create_floor_table(engine: Engine) -> None:
    _metadata.create_all(engine)


def create_floor_app(database_url: str) -> Flask:
    engine = create_db_engine(DatabaseSettings(url=database_url))
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
    parser = arguments()
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    serve_instead(lambda: create_floor_app(args.database_url), args)


if __name__ == "__main__":
    main()
