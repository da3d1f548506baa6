"""``robot web`` under gunicorn: its listening sockets, idle connections, a port in use."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from robot.serve import PortInUse, bind_address, check_port
from scripts.benchlib.stack import (
    children,
    connections_by_child,
    free_port,
    listening_sockets,
    socket_links,
)

ROOT = Path(__file__).resolve().parents[2]


def _environment(tmp_path: Path, reuse_port: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBOT_", "XDG_"))}
    return env | {
        "HOME": str(tmp_path),  # where gunicorn would put its control socket
        "ROBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
        "ROBOT_SERVER_REUSE_PORT": str(reuse_port).lower(),
        "ROBOT_VOICE_CACHE_DIR": str(tmp_path / "voice"),
    }


@contextlib.contextmanager
def _web(
    tmp_path: Path, reuse_port: bool, threads: int = 4
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    command = [sys.executable, "-m", "robot", "web", "--port", str(port)]
    command += ["--workers", "2", "--threads", str(threads)]
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=_environment(tmp_path, reuse_port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not _both_listening(proc.pid, port):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            yield proc, port
        finally:
            # The whole session: a worker must not outlive a failed test.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _both_listening(pid: int, port: int) -> bool:
    with contextlib.suppress(requests.RequestException):
        if not requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
            return False
        kids = children(pid)
        # The first answer comes from whichever process listens first; wait for both.
        return len(kids) == 2 and all(socket_links(kid) & listening_sockets(port) for kid in kids)
    return False


@pytest.mark.parametrize("reuse_port", [True, False])
def test_each_process_listens_on_its_own_socket_only_with_reuse_port(
    tmp_path: Path, reuse_port: bool
) -> None:
    with _web(tmp_path, reuse_port) as (proc, port):
        listening = listening_sockets(port)
        by_worker = [socket_links(child) & listening for child in children(proc.pid)]
        held_by_master = socket_links(proc.pid) & listening
        if reuse_port:
            # Two sockets, one a worker; the master holds none, so none waits unaccepted.
            assert len(listening) == 2
            assert by_worker[0] and by_worker[1] and not by_worker[0] & by_worker[1]
            assert not held_by_master
        else:
            assert len(listening) == 1
            assert by_worker == [listening, listening] and held_by_master == listening
    # gunicorn's control socket is off: every gunicorn of the user would share its one path.
    assert not (tmp_path / ".gunicorn").exists()


def test_kept_alive_connections_land_in_both_processes_with_reuse_port(tmp_path: Path) -> None:
    # The kernel picks a socket by a hash of each connection's addresses, so 16 connections
    # all in one of two processes has a chance of 2 in 65,536.
    with _web(tmp_path, reuse_port=True) as (proc, port):
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        try:
            for client in clients:
                client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
            spread = connections_by_child(proc.pid, port, os.getpid())
            assert sum(spread) == 16
            assert min(spread) >= 1, spread
        finally:
            for client in clients:
                client.close()


def test_idle_new_connections_do_not_hold_up_requests(tmp_path: Path) -> None:
    # gunicorn 27 hands each new connection to a thread, which would wait up to 5 s for its
    # request: with 2 threads a process, two idle connections in each would stall the web.
    with _web(tmp_path, reuse_port=True, threads=2) as (_proc, port):
        # 16, so that each process gets at least two but once in about 2,000 runs.
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        try:
            time.sleep(0.3)  # every idle connection accepted and with a thread, if it kept one
            started = time.monotonic()
            for _ in range(4):  # new connections: each lands in either process
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                assert response.ok
            assert time.monotonic() - started < 2.0
        finally:
            for sock in idle:
                sock.close()


def test_a_port_taken_by_a_plain_listener_stops_the_web_at_once(tmp_path: Path) -> None:
    # With reuse_port the processes bind after the fork; one that cannot would be restarted
    # forever, so the address is checked first.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port}"):
            check_port("127.0.0.1", port, reuse_port=True)
        command = [sys.executable, "-m", "robot", "web", "--port", str(port)]
        env = _environment(tmp_path, reuse_port=True)
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=30)
        assert done.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr.decode()


def test_a_port_shared_with_reuse_port_is_free_to_the_check() -> None:
    # Another SO_REUSEPORT listener of this user: the web joins it (see the README).
    with socket.socket() as shared:
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        shared.bind(("127.0.0.1", 0))
        shared.listen()
        port = shared.getsockname()[1]
        check_port("127.0.0.1", port, reuse_port=True)
        with pytest.raises(PortInUse):
            check_port("127.0.0.1", port, reuse_port=False)


def test_the_check_binds_the_family_gunicorn_binds() -> None:
    # An IPv6 address is put in brackets for gunicorn; "" is every IPv4 interface, as gunicorn
    # takes it.
    assert bind_address("::1", 8000) == "[::1]:8000"
    assert bind_address("[::1]", 8000) == "[::1]:8000"
    assert bind_address("127.0.0.1", 8000) == "127.0.0.1:8000"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse):
            check_port("", port, reuse_port=False)
