"""Engine and sessions; SQLite runs in WAL mode, PostgreSQL by URL."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from robot.config import DatabaseSettings


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (SQLAlchemy's default driver is psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_postgres(bind: Engine | Connection | None) -> bool:
    """PostgreSQL gets row locks (FOR UPDATE, SKIP LOCKED); SQLite serialises writers anyway."""
    return bind is not None and bind.dialect.name == "postgresql"


def json_text(value: Any) -> str:
    """A JSON column's value as text: orjson, and the standard library for what it refuses.

    Every warning, event and attempt carries a JSON column, and the standard encoder was a
    twentieth of a batch's CPU, spent inside SQLite's write lock. orjson writes the same
    document (compact, UTF-8 unescaped). It refuses what the standard encoder takes, such as
    integers past 64 bits or keys that are not strings: those are written as before.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def create_db_engine(settings: DatabaseSettings) -> Engine:
    url = make_url(normalise_url(settings.url))
    # hide_parameters: a logged database error must not carry the phone numbers it was writing.
    kwargs: dict[str, Any] = {"echo": settings.echo, "hide_parameters": True}
    kwargs["json_serializer"] = json_text
    # Keep as many connections as a process has threads: one opened on overflow is closed
    # after use, and a new SQLite connection runs its PRAGMAs again (seen in the worker's
    # profile with 8 placing threads against the default pool of 5).
    pool = {"pool_size": settings.pool_size, "max_overflow": settings.pool_size}
    if url.get_backend_name() == "sqlite":
        if not _in_memory(url):  # an in-memory database has a pool of its own kind
            kwargs.update(pool)
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": settings.sqlite_busy_timeout}
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, settings.sqlite_busy_timeout)
        return engine
    kwargs.update(pool)
    engine = create_engine(url, **kwargs)
    _ping_idle_connections(engine)
    return engine


#: A pooled connection unused for longer than this (seconds) is tested before it is handed out.
PING_AFTER_IDLE = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's pool_pre_ping, only for connections that sat unused in the pool a while.

    pool_pre_ping costs a round trip on every checkout: one of the three a status callback
    makes, and one for each of the worker's many short transactions. A connection in steady
    use has just shown it works; one that sat idle may have been cut by a server restart, a
    failover or a firewall, and is tested first, as pool_pre_ping would. A connection that dies
    while in use fails its statement, and SQLAlchemy then invalidates the whole pool, so only
    the work in flight at that moment fails (answered as an error, nothing half-stored).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces the connection and tries again
            raise DisconnectionError("an idle connection is gone") from exc


def _in_memory(url: URL) -> bool:
    """SQLAlchemy's own test for an in-memory SQLite database."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT and
        # BEGIN IMMEDIATE; take control of it (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers (the dashboard, webhooks) run while a writer commits.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock up front: a deferred transaction that later writes can fail
        # with "database is locked" instead of waiting its turn. A session that only reads
        # (read_session) needs no lock in WAL mode: it would only queue behind the writers.
        dbapi_connection = conn.connection.dbapi_connection
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            dbapi_connection.execute("BEGIN")  # straight to sqlite3, as below (a few µs less)
        elif not _begin_immediate(dbapi_connection, busy_timeout):
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # still locked: wait as SQLite does, or fail


#: Longest pause between two tries for SQLite's write lock.
_LOCK_POLL_MAX = 0.002


def _begin_immediate(dbapi_connection: Any, timeout: float) -> bool:
    """Take SQLite's write lock, retrying every millisecond or two; False if not within timeout.

    SQLite's own busy handler sleeps 1, 2, 5 … 50, 100 ms between tries, so a waiter sleeps on
    long after the lock is free: with the web processes and the worker's threads all writing,
    profiles showed a third of the worker's time and a fifth of the web's in BEGIN IMMEDIATE.
    Short polls hand the lock over within a couple of milliseconds instead.
    """
    deadline = time.monotonic() + timeout
    pause = 0.0001
    dbapi_connection.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, _LOCK_POLL_MAX)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


#: Execution option of sessions that never write (see :func:`read_session`).
READ_ONLY_OPTION = "robot_read_only"


def read_session(factory: sessionmaker[Session]) -> Session:
    """A session for reads only: on SQLite its transaction does not take the write lock.

    Profiles of the worker and the intake showed threads queueing for SQLite's write lock
    (BEGIN IMMEDIATE) just to read. A write in such a session fails on SQLite instead of
    waiting, so use it only where nothing is written. PostgreSQL is unaffected.
    """
    return factory(execution_options={READ_ONLY_OPTION: True})


def read_only_options(bind: Engine | Connection) -> dict[str, Any]:
    """Execution options for connections that only read.

    SQLite: the transaction does not take the write lock (see :func:`read_session`).
    PostgreSQL: autocommit. In a transaction, a read ends with a ROLLBACK when the connection
    is closed, and psycopg answers every ROLLBACK by dropping all the statements it had
    prepared on that connection (DEALLOCATE ALL): the next transactions on it were parsed and
    planned afresh. Statement logs of a dial run showed 1.2 of those a warning. Under READ
    COMMITTED each statement takes its own snapshot anyway, so autocommit reads see the same.
    """
    if is_postgres(bind):
        return {READ_ONLY_OPTION: True, "isolation_level": "AUTOCOMMIT"}
    return {READ_ONLY_OPTION: True}


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A bare connection for reads only, as :func:`read_session` without the ORM's cost."""
    with engine.connect() as conn:
        yield conn.execution_options(**read_only_options(engine))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
