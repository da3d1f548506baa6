"""The bench's count of a server's connections by process (read from /proc)."""

from __future__ import annotations

import multiprocessing
import os
import socket
from multiprocessing.synchronize import Event

from scripts.benchlib.stack import connections_by_child


def _accept(listener: socket.socket, count: int, accepted: Event, release: Event) -> None:
    held = [listener.accept()[0] for _ in range(count)]
    accepted.set()
    release.wait(30)
    for conn in held:
        conn.close()


def test_each_child_is_counted_with_the_connections_it_accepted() -> None:
    # Two child processes share one listener, as gunicorn's workers do: the first takes one
    # connection, the second three.
    fork = multiprocessing.get_context("fork")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    release = fork.Event()
    clients: list[socket.socket] = []
    workers = []
    try:
        for count in (1, 3):
            accepted = fork.Event()
            worker = fork.Process(target=_accept, args=(listener, count, accepted, release))
            worker.start()
            workers.append(worker)
            clients += [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
            assert accepted.wait(10)
        # Our own client ends are established too, but they are not on the server's port, and
        # this process is not one of its children.
        assert [n for n in connections_by_child(os.getpid(), port) if n] == [1, 3]
        assert not any(connections_by_child(os.getpid(), port + 1 if port < 65535 else 1))
        # Counted by the client that opened them: ours are all four; once we close one,
        # the server still holds its end for a moment, but it is no longer counted.
        assert [n for n in connections_by_child(os.getpid(), port, os.getpid()) if n] == [1, 3]
        clients.pop().close()
        assert sum(connections_by_child(os.getpid(), port, os.getpid())) == 3
    finally:
        release.set()
        for client in clients:
            client.close()
        for worker in workers:
            worker.join(10)
        listener.close()
