"""The real processes of a run (gunicorn web, workers, emulator, no-op) and their databases."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from robot import migrate
from robot.config import DatabaseSettings
from robot.db import create_db_engine, normalise_url

from .http import host_port

ROOT = Path(__file__).resolve().parents[2]
AUTH_TOKEN = "bench-auth-token"
ACCOUNT_SID = "AC" + "b" * 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not log {needle!r}:\n{self.log_text()[-3000:]}")

    def wait_http(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + path, timeout=1).status_code < 500:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer {path}:\n{self.log_text()[-3000:]}")

    def wait_listening(self, processes: int, timeout: float = 30.0) -> None:
        """Wait until each of the server's ``processes`` child processes holds a socket
        listening on its port. The first answer comes from whichever process listens first;
        with ``reuse_port`` the others bind their own sockets a little later, and connections
        opened before then could all land in the first."""
        port = host_port(self.url)[1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listening = listening_sockets(port)
            kids = children(self.pid)
            if len(kids) == processes and all(socket_links(kid) & listening for kid in kids):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: not every process listens:\n{self.log_text()[-3000:]}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def children(pid: int) -> list[int]:
    try:
        text_ = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text_.split()]


def tcp_sockets() -> list[tuple[str, int, int, str]]:
    """Every TCP socket of the machine, IPv4 and IPv6: (state, local port, remote port,
    "socket:[inode]"), the state as the kernel writes it ("01" established, "0A" listening)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                found.append((fields[3], local, remote, f"socket:[{fields[9]}]"))
    return found


def connections_by_child(pid: int, port: int, client: int | None = None) -> list[int]:
    """How many established connections to ``port`` each child process of ``pid`` (a gunicorn
    server's workers) holds, fewest first: which process a new connection lands in is the
    kernel's and gunicorn's choice, and a process serves its connections on one core. With
    ``client``, only the connections that process has open to ``port`` are counted: the
    server may hold others, such as the emulator's kept-alive callback connections to the
    no-op, which doubles as the callback sink."""
    rows = [
        (local, remote, inode) for state, local, remote, inode in tcp_sockets() if state == "01"
    ]
    wanted = {inode for local, _, inode in rows if local == port}
    if client is not None:
        held = socket_links(client)
        ours = {local for local, remote, inode in rows if remote == port and inode in held}
        wanted = {inode for local, remote, inode in rows if local == port and remote in ours}
    return sorted(len(socket_links(child) & wanted) for child in children(pid))


def listening_sockets(port: int) -> set[str]:
    """Every socket listening on ``port``, as its descriptors read ("socket:[inode]")."""
    return {inode for state, local, _, inode in tcp_sockets() if state == "0A" and local == port}


def socket_links(pid: int) -> set[str]:
    """What the process's descriptors point at ("socket:[inode]" for a socket)."""
    links = set()
    with contextlib.suppress(OSError):  # the process went away
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # the descriptor was closed meanwhile
                links.add(os.readlink(fd))
    return links


def cpu_seconds(pid: int, with_children: bool = True) -> float:
    """CPU time (user + system) the process, and its live child processes, have used."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
    if with_children:
        total += sum(cpu_seconds(child) for child in children(pid))
    return total


def named_cpu_seconds(name: str) -> float:
    """CPU time of every live process called ``name`` (the PostgreSQL server and backends)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        head, _, rest = text.rpartition(")")
        if head.partition("(")[2] == name:
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM), in MB."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024.0
    return {"rss_mb": found.get("VmRSS", 0.0), "peak_mb": found.get("VmHWM", 0.0)}


@dataclass
class Stack:
    """Starts processes with the bench's environment; stops them all at the end."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    profile_dir: Path | None = None
    #: py-spy's --gil: a thread waiting on a lock, a socket or the GIL is not sampled.
    profile_gil: bool = False
    #: server.reuse_port for every served process; None keeps the product's default.
    reuse_port: bool | None = None
    _warned_no_spy: bool = False

    def server_reuse_port(self) -> bool:
        """What the served processes run with (the default read from the product's settings)."""
        if self.reuse_port is not None:
            return self.reuse_port
        from robot.config import ServerSettings

        return ServerSettings().reuse_port

    def env(self, **settings: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOT_")}
        env.update(
            ROBOT_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            ROBOT_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            ROBOT_VOICE_CACHE_DIR=str(self.workdir / "voice-cache"),
            ROBOT_SERVER_REUSE_PORT=str(self.server_reuse_port()).lower(),
            PYTHONUNBUFFERED="1",
        )
        for key, value in settings.items():
            env["ROBOT_" + key.upper()] = str(value)
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str], url: str = "") -> Proc:
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        handle.close()
        proc = Proc(name, popen, log, url)
        self.procs.append(proc)
        return proc

    def robot(self, name: str, command: list[str], env: dict[str, str], url: str = "") -> Proc:
        return self.spawn(name, [sys.executable, "-m", "robot", *command], env, url)

    def web(self, name: str, env: dict[str, str], workers: int = 2, threads: int = 4) -> Proc:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **env,
            "ROBOT_SERVER_PUBLIC_BASE_URL": env.get("ROBOT_SERVER_PUBLIC_BASE_URL") or url,
        }
        cmd = ["web", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--workers", str(workers), "--threads", str(threads)]
        proc = self.robot(name, cmd, env, url)
        proc.wait_http("/healthz")
        proc.wait_listening(workers)
        return proc

    def noop(self, name: str = "noop", workers: int = 2, threads: int = 4) -> Proc:
        return self._served(name, "scripts.benchlib.noop", [], workers, threads)

    def standin(self, name: str = "standin", workers: int = 2, threads: int = 4) -> Proc:
        """The provider stand-in (scripts.benchlib.standin): creates answered, nothing kept."""
        return self._served(name, "scripts.benchlib.standin", [], workers, threads)

    def floor(self, name: str, database_url: str, workers: int = 2, threads: int = 4) -> Proc:
        """The write floor (scripts.benchlib.floor) on that database."""
        extra = ["--database-url", database_url]
        return self._served(name, "scripts.benchlib.floor", extra, workers, threads)

    def _served(self, name: str, module: str, extra: list[str], workers: int, threads: int) -> Proc:
        """A bench app served as the product is (scripts.benchlib.served)."""
        port = free_port()
        args = [sys.executable, "-m", module, "--port", str(port), *extra]
        args += ["--workers", str(workers), "--threads", str(threads)]
        proc = self.spawn(name, args, self.env(), f"http://127.0.0.1:{port}")
        proc.wait_http("/healthz")
        proc.wait_listening(workers)
        return proc

    def emulator(self, time_scale: float) -> Proc:
        port = free_port()
        env = self.env(emulator_time_scale=time_scale, emulator_calls_per_second=0)
        cmd = ["emulator", "--host", "127.0.0.1", "--port", str(port)]
        proc = self.robot("emulator", cmd, env, f"http://127.0.0.1:{port}")
        proc.wait_http("/_emulator/health")
        return proc

    def worker(self, name: str, env: dict[str, str]) -> Proc:
        proc = self.robot(name, ["worker"], {**env, "ROBOT_LOG_LEVEL": "INFO"})
        proc.wait_log("started")
        return proc

    def stop(self, *procs: Proc) -> None:
        for proc in procs or tuple(self.procs):
            proc.stop()
            if proc in self.procs:
                self.procs.remove(proc)

    def profile(self, proc: Proc, label: str, seconds: float) -> subprocess.Popen[bytes] | None:
        """py-spy for ``seconds`` on the process and its children (collapsed stacks)."""
        if self.profile_dir is None:
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            if not self._warned_no_spy:  # say so once, not silently profile nothing
                print("--profile: py-spy is not installed (uv pip install py-spy); no profiles")
                self._warned_no_spy = True
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{label}.txt"
        args = spy_args(spy, proc.pid, out, seconds, gil=self.profile_gil)
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def spy_args(spy: str, pid: int, out: Path, seconds: float, *, gil: bool) -> list[str]:
    """py-spy's command line: the process and its children, collapsed stacks, at 250 Hz."""
    args = [spy, "record", "--pid", str(pid), "--subprocesses", "--format", "raw"]
    args += ["--duration", str(max(1, round(seconds))), "--rate", "250", "--output", str(out)]
    # --nonblocking: never pause the measured process; --gil: only threads holding the GIL.
    return [*args, "--nonblocking", *(["--gil"] if gil else [])]


# --- databases --------------------------------------------------------------------------------


@dataclass
class Database:
    kind: str  #: "sqlite" or "postgres"
    url: str
    _admin: Engine | None = None
    _name: str = ""

    def engine(self) -> Engine:
        return create_db_engine(DatabaseSettings(url=self.url))

    def drop(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)'))


class Databases:
    """Fresh migrated databases, copied from one template per kind."""

    def __init__(self, workdir: Path, postgres_url: str) -> None:
        self.workdir = workdir
        self.postgres_url = postgres_url
        self._sqlite_template: Path | None = None
        self._pg_template = ""
        self._admin: Engine | None = None
        self._made: list[Database] = []
        self._tag = uuid.uuid4().hex[:8]

    def postgres_available(self) -> bool:
        try:
            admin = self._admin_engine()
            with admin.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def _admin_engine(self) -> Engine:
        if self._admin is None:
            url = make_url(normalise_url(self.postgres_url))
            self._admin = create_engine(url, isolation_level="AUTOCOMMIT")
        return self._admin

    def fresh(self, kind: str, label: str) -> Database:
        if kind == "sqlite":
            if self._sqlite_template is None:
                self._sqlite_template = self.workdir / "template.db"
                engine = create_db_engine(
                    DatabaseSettings(url=f"sqlite:///{self._sqlite_template}")
                )
                migrate.upgrade(engine)
                engine.dispose()
            path = self.workdir / f"{label}.db"
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(path) + suffix).unlink()
            shutil.copy(self._sqlite_template, path)
            db = Database("sqlite", f"sqlite:///{path}")
        else:
            admin = self._admin_engine()
            if not self._pg_template:
                self._pg_template = f"robot_bench_{self._tag}_template"
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{self._pg_template}"'))
                url = admin.url.set(database=self._pg_template)
                engine = create_db_engine(
                    DatabaseSettings(url=url.render_as_string(hide_password=False))
                )
                migrate.upgrade(engine)
                engine.dispose()
            name = f"robot_bench_{self._tag}_{label}"
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self._pg_template}"'))
            database_url = admin.url.set(database=name).render_as_string(hide_password=False)
            db = Database("postgres", database_url, admin, name)
        self._made.append(db)
        return db

    def cleanup(self) -> None:
        for db in self._made:
            with contextlib.suppress(Exception):
                db.drop()
        if self._admin is not None and self._pg_template:
            with contextlib.suppress(Exception), self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._pg_template}" WITH (FORCE)'))
        if self._admin is not None:
            self._admin.dispose()
