"""Column types on both databases: UTCDateTime (with its one-entry bind cache) and JSON text."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, insert, select

from robot.db import json_text
from robot.models import Event

START = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=UTC)


def _event(at: datetime, kind: str = "note") -> dict[str, object]:
    return {"case_id": None, "kind": kind, "actor": "test", "data": {}, "at": at}


def _stored(engine: Engine) -> list[datetime]:
    with engine.connect() as conn:
        return list(conn.scalars(select(Event.at).order_by(Event.id)))


def test_rows_sharing_a_stamp_and_rows_with_their_own_keep_each_value(engine: Engine) -> None:
    """The cache answers a repeated object; a different value between repeats is not lost."""
    shared = START
    others = [START + timedelta(microseconds=i) for i in range(1, 4)]
    # Equal to ``shared`` but another object, and the same instant in another zone.
    twin = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=UTC)
    shifted = START.astimezone(timezone(timedelta(hours=8)))
    stamps = [shared, shared, others[0], shared, others[1], others[1], twin, shifted, others[2]]
    with engine.begin() as conn:
        conn.execute(insert(Event), [_event(at) for at in stamps])
    assert _stored(engine) == [s.astimezone(UTC) for s in stamps]


def test_a_naive_datetime_is_still_refused_after_a_cached_one(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Event), [_event(START)])
    naive = START.replace(tzinfo=None)
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        conn.execute(insert(Event), [_event(START), _event(naive)])


def test_threads_binding_their_own_stamps_at_once_store_their_own(engine: Engine) -> None:
    """Many threads share one column's cache: none may get another thread's stamp."""
    threads, rounds = 8, 25
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for r in range(rounds):
                at = START + timedelta(seconds=n, milliseconds=r)
                with engine.begin() as conn:
                    conn.execute(insert(Event), [_event(at, f"t{n}-{r}")] * 3)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    with engine.connect() as conn:
        rows = conn.execute(select(Event.kind, Event.at)).all()
    assert len(rows) == threads * rounds * 3
    for kind, at in rows:
        n, r = (int(part) for part in kind[1:].split("-"))
        assert at == START + timedelta(seconds=n, milliseconds=r), kind


def test_json_columns_round_trip_what_either_encoder_writes(engine: Engine) -> None:
    """orjson writes most documents; what it refuses goes through the standard encoder."""
    documents = [
        {"external_id": "a-1", "note": "对方自称公安", "nested": [1, 2.5, None, True]},
        {"huge": 2**70},  # past orjson's 64 bits
        {"risk": "high", "result": "created"},
    ]
    with engine.begin() as conn:
        conn.execute(insert(Event), [{**_event(START), "data": doc} for doc in documents])
    with engine.connect() as conn:
        stored = list(conn.scalars(select(Event.data).order_by(Event.id)))
    assert stored == documents


def test_json_text_falls_back_for_what_orjson_refuses() -> None:
    assert json_text({"note": "对方"}) == '{"note":"对方"}'  # compact, unescaped: orjson
    assert json_text({"n": 2**70}) == '{"n": 1180591620717411303424}'  # standard library
    assert json_text({1: "one"}) == '{"1": "one"}'  # a key that is not a string
