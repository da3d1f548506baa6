"""KeyedRead finds exactly the rows an IN list would, for any number of values, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, event, insert, select

from robot.bulk import IN_LIST_CHUNK, KeyedRead
from robot.models import Base, Event

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
_events = Base.metadata.tables[Event.__tablename__]
#: kind is String(40): a key, and a column PostgreSQL would cut a longer value down to.
_BY_KIND = KeyedRead(
    select(_events.c.kind, _events.c.id).where(_events.c.actor == bindparam("actor")),
    _events.c.kind,
)
_BY_ID = KeyedRead(select(_events.c.id, _events.c.kind), _events.c.id)


def _add(engine: Engine, kinds: list[str], actor: str = "test") -> dict[str, int]:
    rows = [
        {"case_id": None, "kind": kind, "actor": actor, "data": {}, "attempt_id": None, "at": AT}
        for kind in kinds
    ]
    with engine.begin() as conn:
        conn.execute(insert(_events), rows)
        stored = conn.execute(select(_events.c.kind, _events.c.id)).all()
    return {kind: event_id for kind, event_id in stored}


def _read(
    engine: Engine, read: KeyedRead, values: list[Any], **params: Any
) -> set[tuple[Any, ...]]:
    with engine.connect() as conn:
        return {tuple(row) for row in read.execute(conn, values, params)}


def test_every_match_comes_back_past_the_length_of_one_in_list(engine: Engine) -> None:
    count = 2 * IN_LIST_CHUNK + 203
    ids = _add(engine, [f"k.{i}" for i in range(count)])
    _add(engine, [f"other.{i}" for i in range(3)], actor="someone else")
    wanted = [f"k.{i}" for i in range(0, count, 2)] + [f"missing.{i}" for i in range(50)]
    found = _read(engine, _BY_KIND, wanted, actor="test")
    assert found == {(f"k.{i}", ids[f"k.{i}"]) for i in range(0, count, 2)}


def test_the_statements_other_parameters_still_filter(engine: Engine) -> None:
    ids = _add(engine, ["shared.a", "shared.b"], actor="first")
    assert _read(engine, _BY_KIND, ["shared.a", "shared.b"], actor="nobody") == set()
    assert _read(engine, _BY_KIND, ["shared.b"], actor="first") == {("shared.b", ids["shared.b"])}


def test_values_the_statement_carries_are_bound_too(engine: Engine) -> None:
    """A literal in the condition and a LIMIT: SQLAlchemy binds them, not the caller."""
    by_kind_of_first = KeyedRead(
        select(_events.c.kind).where(_events.c.actor == "first").order_by(_events.c.kind).limit(2),
        _events.c.kind,
    )
    _add(engine, ["own.a", "own.b", "own.c"], actor="first")
    _add(engine, ["own.d"], actor="second")
    found = _read(engine, by_kind_of_first, ["own.a", "own.b", "own.c", "own.d"])
    assert found == {("own.a",), ("own.b",)}


def test_values_with_array_syntax_in_them_match_only_themselves(engine: Engine) -> None:
    awkward = ["a,b", 'say "hi"', "{x}", "NULL", "back\\slash", "对方自称公安", "", " ", "a", "b"]
    ids = _add(engine, awkward)
    for value in awkward:
        assert _read(engine, _BY_KIND, [value], actor="test") == {(value, ids[value])}
    assert len(_read(engine, _BY_KIND, awkward, actor="test")) == len(awkward)


def test_a_value_longer_than_the_column_matches_nothing(engine: Engine) -> None:
    """A cast to varchar(40) would cut it down to the stored value and match it."""
    stored = "long." + "k" * 35  # exactly 40 characters
    _add(engine, [stored])
    assert _read(engine, _BY_KIND, [stored + "-and-more"], actor="test") == set()
    assert len(_read(engine, _BY_KIND, [stored], actor="test")) == 1


def test_integer_keys(engine: Engine) -> None:
    ids = _add(engine, [f"n.{i}" for i in range(IN_LIST_CHUNK + 10)])
    some = sorted(ids.values())[::3]
    found = _read(engine, _BY_ID, [*some, 10**12])
    assert found == {(event_id, kind) for kind, event_id in ids.items() if event_id in some}


def test_no_values_send_no_statement(engine: Engine) -> None:
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            assert _BY_KIND.execute(conn, [], {"actor": "test"}) == []
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert sent == []


def test_postgresql_gets_one_statement_and_sqlite_one_per_in_list(engine: Engine) -> None:
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(args[2])

    _add(engine, ["only.one"])
    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            _BY_KIND.execute(conn, [f"v.{i}" for i in range(IN_LIST_CHUNK + 1)], {"actor": "x"})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    statements = [s for s in sent if "FROM events" in s]
    if engine.dialect.name == "postgresql":
        assert len(statements) == 1 and "ANY" in statements[0]
    else:
        assert len(statements) == 2 and " IN " in statements[0]
