"""``robot web`` under gunicorn: one listening socket per process with ``server.reuse_port``."""

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

from robot.serve import PortInUse, check_port
from scripts.benchlib.stack import children, connections_by_child, free_port

ROOT = Path(__file__).resolve().parents[2]


def _listening_inodes(port: int) -> set[str]:
    """Descriptor targets ("socket:[inode]") of every socket listening on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    return inodes


def _links(pid: int) -> set[str]:
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            links.add(os.readlink(fd))
    return links


@contextlib.contextmanager
def _web(tmp_path: Path, reuse_port: bool) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBOT_", "XDG_"))}
    env |= {
        "HOME": str(tmp_path),  # where gunicorn would put its control socket
        "ROBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
        "ROBOT_SERVER_REUSE_PORT": str(reuse_port).lower(),
        "ROBOT_VOICE_CACHE_DIR": str(tmp_path / "voice"),
    }
    command = [sys.executable, "-m", "robot", "web", "--port", str(port), "--workers", "2"]
    log = (tmp_path / "web.log").open("wb")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "web.log").read_text()
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                    # Both processes listen once their sockets show up, not at the first answer.
                    if len(children(proc.pid)) == 2 and all(
                        _links(child) & _listening_inodes(port) for child in children(proc.pid)
                    ):
                        break
            assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
            time.sleep(0.1)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()


@pytest.mark.parametrize("reuse_port", [True, False])
def test_each_process_listens_on_its_own_socket_only_with_reuse_port(
    tmp_path: Path, reuse_port: bool
) -> None:
    with _web(tmp_path, reuse_port) as (proc, port):
        listening = _listening_inodes(port)
        by_worker = [_links(child) & listening for child in children(proc.pid)]
        held_by_master = _links(proc.pid) & listening
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


def test_a_port_taken_by_a_plain_listener_stops_the_web_at_once(tmp_path: Path) -> None:
    # With reuse_port the processes bind after the fork; one that cannot would be restarted
    # forever, so the address is checked first.
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    with taken:
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port}"):
            check_port("127.0.0.1", port, reuse_port=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOT_")}
        env["ROBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'web.db'}"
        command = [sys.executable, "-m", "robot", "web", "--port", str(port)]
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1
        assert "Address already in use" in done.stderr


def test_a_port_shared_with_reuse_port_is_free_to_the_check() -> None:
    # Another SO_REUSEPORT listener of this user: the web joins it (see the README).
    shared = socket.socket()
    shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    shared.bind(("127.0.0.1", 0))
    shared.listen()
    with shared:
        port = shared.getsockname()[1]
        check_port("127.0.0.1", port, reuse_port=True)
        with pytest.raises(PortInUse):
            check_port("127.0.0.1", port, reuse_port=False)
