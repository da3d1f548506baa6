"""BulkInsert writes what SQLAlchemy's own INSERT writes, and fails the way it does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, Text, bindparam, cast, create_engine, insert, select
from sqlalchemy.exc import DataError, IntegrityError

from robot.bulk import BulkInsert
from robot.intake.service import WARNING_COLUMNS, NewCase
from robot.intake.validation import validate_warning
from robot.models import Base, Case, Event, IncomingWarning
from robot.sources import Caller, NewSource
from robot.timeline import EVENT_COLUMNS

AT = datetime(2026, 11, 22, 9, 0, 0, 654321, tzinfo=UTC)
_events = Base.metadata.tables[Event.__tablename__]
_warnings = Base.metadata.tables[IncomingWarning.__tablename__]
_cases = Base.metadata.tables[Case.__tablename__]


def _event_rows(tag: str) -> list[dict[str, Any]]:
    return [
        {
            "case_id": None,
            "kind": f"{tag}.{i}",
            "actor": "source:城市",
            "data": {"n": i, "note": "对方自称公安", "flag": i % 2 == 0, "none": None},
            "attempt_id": None,
            "at": AT + timedelta(seconds=i),
        }
        for i in range(5)
    ]


def _stored_events(engine: Engine, prefix: str) -> list[tuple[Any, ...]]:
    columns = [_events.c[name] for name in EVENT_COLUMNS]
    query = select(*columns).where(_events.c.kind.startswith(prefix)).order_by(_events.c.id)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_rows_read_back_as_sqlalchemys_own_insert_writes_them(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(_events), _event_rows("plain"))
        BulkInsert(_events, EVENT_COLUMNS).execute(conn, _event_rows("bulk"))
    plain, bulk = _stored_events(engine, "plain."), _stored_events(engine, "bulk.")
    assert len(bulk) == 5
    assert [row[:1] + row[2:] for row in bulk] == [row[:1] + row[2:] for row in plain]
    assert bulk[3][3] == {"n": 3, "note": "对方自称公安", "flag": False, "none": None}
    assert bulk[4][5] == AT + timedelta(seconds=4)


def _new_case(engine: Engine, source: NewSource, *, critical: bool = False) -> int:
    item = {"external_id": "b-1", "phone": "+8613800001111", "fraud_type": "fake_police"}
    warning = validate_warning(item, "CN", AT)
    assert not isinstance(warning, list)
    caller = Caller(source.source.id, "city-feed", False, None)
    case = NewCase(caller, warning, AT)
    case.critical = critical
    with engine.begin() as conn:
        BulkInsert(_cases, NewCase.COLUMNS).execute(conn, [case.row()])
        return int(conn.execute(select(_cases.c.id)).scalar_one())


def test_new_cases_keep_their_booleans_and_stamps(engine: Engine, source: NewSource) -> None:
    _new_case(engine, source, critical=True)
    with engine.connect() as conn:
        row = conn.execute(
            select(_cases.c.critical, _cases.c.drill, _cases.c.opened_at, _cases.c.phone)
        ).one()
    assert tuple(row) == (True, False, AT, "+8613800001111")


def test_a_unique_row_taken_meanwhile_raises_integrity_error_and_writes_nothing(
    engine: Engine, source: NewSource
) -> None:
    """The intake's group writer retries on IntegrityError: it must not come out as another
    exception, and the transaction must keep none of the batch."""
    bulk = BulkInsert(_warnings, WARNING_COLUMNS)
    case_id = _new_case(engine, source)

    def row(external_id: str) -> dict[str, Any]:
        return {
            "source_id": source.source.id,
            "external_id": external_id,
            "case_id": case_id,
            "payload": {"external_id": external_id},
            "received_at": AT,
        }

    with engine.begin() as conn:
        bulk.execute(conn, [row("w-1")])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        bulk.execute(conn, [row("w-2"), row("w-1"), row("w-3")])
    with engine.connect() as conn:
        stored = list(conn.scalars(select(_warnings.c.external_id).order_by(_warnings.c.id)))
    assert stored == ["w-1"]


def test_a_row_without_a_column_is_refused_before_anything_is_sent(engine: Engine) -> None:
    rows = _event_rows("short")
    del rows[2]["attempt_id"]
    with pytest.raises(KeyError, match="attempt_id"), engine.begin() as conn:
        BulkInsert(_events, EVENT_COLUMNS).execute(conn, rows)
    assert _stored_events(engine, "short.") == []


def test_no_rows_sends_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        BulkInsert(_events, EVENT_COLUMNS).execute(conn, [])
    assert _stored_events(engine, "") == []


def test_a_value_too_long_for_its_column_is_never_cut_short(engine: Engine) -> None:
    """PostgreSQL refuses it, as SQLAlchemy's own INSERT does; SQLite keeps it whole."""
    rows = _event_rows("long")
    rows[1]["kind"] = "long." + "k" * 60  # kind is String(40)
    try:
        with engine.begin() as conn:
            BulkInsert(_events, EVENT_COLUMNS).execute(conn, rows)
    except DataError:
        assert engine.dialect.name == "postgresql"
        assert _stored_events(engine, "long.") == []
    else:
        assert engine.dialect.name == "sqlite"
        assert _stored_events(engine, "long.")[1][1] == rows[1]["kind"]


def test_a_json_value_that_is_a_list_is_one_value(engine: Engine) -> None:
    rows = _event_rows("list")
    rows[0]["data"] = [1, [2, 3], {"four": None}]
    rows[1]["data"] = []
    with engine.begin() as conn:
        BulkInsert(_events, EVENT_COLUMNS).execute(conn, rows)
    stored = [row[3] for row in _stored_events(engine, "list.")]
    assert stored[:2] == [[1, [2, 3], {"four": None}], []]


def test_each_engine_writes_with_its_own_settings(engine: Engine) -> None:
    """One BulkInsert serves every engine (they are module-level): nothing of one engine's
    dialect, such as its JSON serializer, may leak into another's writes."""
    bulk = BulkInsert(_events, EVENT_COLUMNS)
    with engine.begin() as conn:
        bulk.execute(conn, _event_rows("first"))
    indented = create_engine(engine.url, json_serializer=lambda value: json.dumps(value, indent=2))
    try:
        with indented.begin() as conn:
            bulk.execute(conn, _event_rows("second"))
        raw = select(cast(_events.c.data, Text)).where(_events.c.kind == bindparam("kind"))
        with engine.connect() as conn:
            first = conn.scalar(raw, {"kind": "first.0"})
            second = conn.scalar(raw, {"kind": "second.0"})
    finally:
        indented.dispose()
    assert first is not None and "\n" not in first
    assert second is not None and "\n" in second


def test_a_driver_with_named_parameters_gets_sqlalchemys_own_insert(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("sqlite3 takes named parameters too; psycopg gets the arrays")
    named = create_engine(engine.url, paramstyle="named")
    try:
        assert not named.dialect.positional
        with named.begin() as conn:
            BulkInsert(_events, EVENT_COLUMNS).execute(conn, _event_rows("named"))
    finally:
        named.dispose()
    with engine.begin() as conn:
        conn.execute(insert(_events), _event_rows("plain"))
    named_rows, plain = _stored_events(engine, "named."), _stored_events(engine, "plain.")
    assert [row[2:] for row in named_rows] == [row[2:] for row in plain]
    assert [row[1] for row in named_rows] == [f"named.{i}" for i in range(5)]
