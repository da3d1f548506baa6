"""SQLite's wake-up: a datagram from the web process's one socket to the worker's."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

from robot.wakeup import WakeListener, Waker


def test_every_commit_wakes_a_listener_and_none_is_needed(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'robot.db'}")
    waker = Waker(engine)
    waker.after_commit()  # nobody listens yet: the send fails quietly
    listener = WakeListener(engine)
    try:
        assert not listener.wait(0.05)  # the failed send left nothing behind
        for _ in range(3):  # the same socket, again and again
            waker.after_commit()
            assert listener.wait(1.0)
            assert not listener.wait(0.05)  # each wake-up is drained
    finally:
        listener.close()
    waker.after_commit()  # the listener is gone again: still quiet
    relistener = WakeListener(engine)
    try:
        waker.after_commit()
        assert relistener.wait(1.0)
    finally:
        relistener.close()
