"""PostgreSQL connections that die in the pool: an idle one is tested before use and replaced;
one in steady use fails once, and the pool is renewed (no ping on every checkout)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

import robot.db

POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _pooled_backend(engine: Engine) -> int:
    """Open one pooled connection, return it to the pool, and give its server process id."""
    engine.pool.dispose()
    with engine.connect() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def _terminate(database_url: str, pid: int) -> None:
    admin = create_engine(robot.db.normalise_url(database_url))
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    finally:
        admin.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        return pid


@POSTGRES_ONLY
def test_an_idle_connection_cut_by_the_server_is_replaced_before_use(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _pooled_backend(engine)
    _terminate(database_url, dead)
    monkeypatch.setattr(robot.db, "PING_AFTER_IDLE", 0.0)  # it has been idle long enough
    assert _backend(engine) != dead  # no error: tested, found gone, replaced


@POSTGRES_ONLY
def test_a_connection_in_steady_use_is_not_pinged_and_a_dead_one_fails_once(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _pooled_backend(engine)
    _terminate(database_url, dead)
    monkeypatch.setattr(robot.db, "PING_AFTER_IDLE", 3600.0)  # it was just used
    with pytest.raises(OperationalError) as failed:
        _backend(engine)
    assert failed.value.connection_invalidated
    assert _backend(engine) != dead  # the pool was renewed
