"""Wake the worker the moment there is new work, so a new warning is dialled at once.

PostgreSQL: NOTIFY inside the writing transaction (delivered on commit) and LISTEN in the
worker. SQLite: a datagram on a Unix socket next to the database file. Either way polling stays
as the fallback, so a lost wake-up only costs one poll interval.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import socket
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, literal, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import Function

CHANNEL = "robot_wake"
_NOTIFY = text("SELECT pg_notify(:channel, '')")


def notify_call() -> Function[Any]:
    """PostgreSQL: the NOTIFY that wakes the workers, as an expression for a statement that
    writes and wakes in one round trip (delivered when that statement's transaction commits)."""
    return func.pg_notify(literal(CHANNEL), literal(""))


def socket_path(engine: Engine) -> Path:
    database = make_url(str(engine.url)).database or "robot.db"
    if database == ":memory:":
        database = "robot-memory.db"
    return Path(database).with_suffix(".wake")


class Waker:
    """Used by the web process: queue a wake-up in a session, or send one now."""

    def __init__(self, engine: Engine) -> None:
        self._postgres = engine.dialect.name == "postgresql"
        self._path = None if self._postgres else str(socket_path(engine))

    def in_transaction(self, db: Session | Connection) -> None:
        """Wake workers when this session commits (PostgreSQL), else right away."""
        if self._postgres:
            db.execute(_NOTIFY, {"channel": CHANNEL})

    def after_commit(self) -> None:
        if self._path is None:
            return
        # Nobody listening, or the buffer is full: the worker polls anyway.
        with contextlib.suppress(OSError):
            _sending_socket().sendto(b"w", self._path)


_sender: socket.socket | None = None
_sender_lock = threading.Lock()


def _sending_socket() -> socket.socket:
    """One unbound socket for the process's life, shared by its threads and Wakers: opening
    and closing one per commit cost more than the send, and a datagram send is one system
    call, so sharing it needs no lock. A forked child may share its parent's."""
    global _sender
    sock = _sender
    if sock is None:
        with _sender_lock:
            if _sender is None:
                _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                _sender.setblocking(False)
                atexit.register(_sender.close)
            sock = _sender
    return sock


class WakeListener:
    """Used by the worker: wait until woken or until the poll interval passes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sock: socket.socket | None = None
        self._pg: Any = None
        if engine.dialect.name == "postgresql":
            self._pg = self._listen_postgres()
        else:
            path = socket_path(engine)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind(str(path))
            self._path = path

    def _listen_postgres(self) -> Any:
        import psycopg  # only the PostgreSQL backend needs it

        url = self._engine.url.set(drivername="postgresql")
        conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def fileno(self) -> int:
        if self._sock is not None:
            return self._sock.fileno()
        return int(self._pg.fileno())

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if woken (all pending wake-ups are drained)."""
        ready, _, _ = select.select([self.fileno()], [], [], max(timeout, 0.0))
        if not ready:
            return False
        self.drain()
        return True

    def drain(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(BlockingIOError):
                while True:
                    self._sock.recv(64, socket.MSG_DONTWAIT)
        else:
            for _ in self._pg.notifies(timeout=0):
                pass

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        if self._pg is not None:
            self._pg.close()
