"""A small HTTP/1.1 load generator on asyncio: keep-alive connections, pre-built requests.

Closed loop (``closed``): N connections, each sends its next request as soon as the last answer
came; measures the most a server can do. Open loop (``open_loop``): requests start at a fixed
rate whatever the server does; measures latency at a given load.

Requests are built before the clock starts, so the client spends its time on sockets, not JSON.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Sample:
    #: perf_counter at send and at the end of the answer.
    start: float
    end: float
    status: int
    body: bytes
    #: time.time() when the answer ended (to compare with other processes' clocks).
    wall_end: float
    #: Position of the request in the list given.
    index: int = -1

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    errors: int = 0

    @property
    def elapsed(self) -> float:
        return max(self.ended - self.started, 1e-9)

    def count(self, *statuses: int) -> int:
        return sum(1 for s in self.samples if s.status in statuses)


def build(
    method: str,
    url: str,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    content_type: str | None = None,
) -> bytes:
    """One HTTP/1.1 request, ready to write on a keep-alive connection."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{k}: {v}" for k, v in headers)
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def basic_auth(user: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {token}")


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request and read its answer; reconnects once if the server closed."""
        for attempt in (0, 1):
            if self.writer is None:
                await self.open()
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(request)
                return await self._read()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _read(self) -> tuple[int, bytes]:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                body += await self.reader.readexactly(size + 2)
                body = body[:-2]
        else:
            body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body


def host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def _closed(
    base_url: str,
    requests: Sequence[bytes],
    concurrency: int,
    before_close: Callable[[], object] | None = None,
) -> Run:
    host, port = host_port(base_url)
    run = Run()
    next_index = 0
    connections = [_Connection(host, port) for _ in range(max(1, min(concurrency, len(requests))))]
    for conn in connections:
        await conn.open()

    async def loop(conn: _Connection) -> None:
        nonlocal next_index
        while next_index < len(requests):
            index = next_index
            request = requests[index]
            next_index += 1
            start = time.perf_counter()
            try:
                status, body = await conn.exchange(request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                run.errors += 1
                conn.close()
                continue
            run.samples.append(Sample(start, time.perf_counter(), status, body, time.time(), index))

    run.started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in connections))
    run.ended = time.perf_counter()
    if before_close is not None:
        before_close()  # every connection has been answered at least once: the server has it
    for conn in connections:
        conn.close()
    return run


def closed(
    base_url: str,
    requests: Sequence[bytes],
    concurrency: int,
    before_close: Callable[[], object] | None = None,
) -> Run:
    """Send every request over ``concurrency`` keep-alive connections as fast as answered;
    ``before_close`` is called after the last answer, with the connections still open."""
    return asyncio.run(_closed(base_url, requests, concurrency, before_close))


async def _open(base_url: str, requests: Sequence[bytes], rate: float, max_connections: int) -> Run:
    host, port = host_port(base_url)
    run = Run()
    idle: list[_Connection] = []
    opened = 0
    slots = asyncio.Semaphore(max_connections)
    for _ in range(min(8, max_connections)):
        conn = _Connection(host, port)
        await conn.open()
        idle.append(conn)
        opened += 1

    async def one(index: int, request: bytes, due: float) -> None:
        async with slots:
            conn = idle.pop() if idle else _Connection(host, port)
            try:
                status, body = await conn.exchange(request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                run.errors += 1
                conn.close()
                return
            # Latency counts from when the request was due (no coordinated omission).
            run.samples.append(Sample(due, time.perf_counter(), status, body, time.time(), index))
            idle.append(conn)

    tasks = []
    run.started = time.perf_counter()
    for i, request in enumerate(requests):
        due = run.started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, request, due)))
    await asyncio.gather(*tasks)
    run.ended = time.perf_counter()
    for conn in idle:
        conn.close()
    return run


def open_loop(
    base_url: str, requests: Sequence[bytes], rate: float, max_connections: int = 64
) -> Run:
    """Start request i at ``i / rate`` seconds, whatever the answers before it."""
    return asyncio.run(_open(base_url, requests, rate, max_connections))


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100.0 * len(ordered))))
    return ordered[rank - 1]
