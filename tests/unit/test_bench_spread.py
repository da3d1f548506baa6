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


def _connect(port: int, count: int, connected: Event, release: Event) -> None:
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    connected.set()
    release.wait(30)
    for conn in held:
        conn.close()


def test_each_child_is_counted_with_the_connections_it_accepted() -> None:
    # Two child processes share one listener, as gunicorn's workers do: the first takes one
    # of our connections, the second three of ours and two from another client process.
    fork = multiprocessing.get_context("fork")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    release = fork.Event()
    clients: list[socket.socket] = []
    processes = []

    def start(target: object, *args: object) -> Event:
        done = fork.Event()
        process = fork.Process(target=target, args=(*args, done, release))
        process.start()
        processes.append(process)
        return done

    try:
        first = start(_accept, listener, 1)
        clients.append(socket.create_connection(("127.0.0.1", port)))
        assert first.wait(10)
        second = start(_accept, listener, 5)
        clients += [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        assert start(_connect, port, 2).wait(10)
        assert second.wait(10)
        # The fork-started processes are this process's children: the two servers count,
        # the other client holds nothing on the server's port.
        assert [n for n in connections_by_child(os.getpid(), port) if n] == [1, 5]
        assert [n for n in connections_by_child(os.getpid(), port, os.getpid()) if n] == [1, 3]
        assert not any(connections_by_child(os.getpid(), port + 1 if port < 65535 else 1))
    finally:
        release.set()
        for client in clients:
            client.close()
        for process in processes:
            process.join(10)
        listener.close()
