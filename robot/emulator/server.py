"""Run the emulator: blocking (``serve_emulator``, gunicorn) or in a background thread (tests,
waitress).

Both keep HTTP/1.1 connections open, as Twilio does. werkzeug's development server closed every
connection after one request: each REST call then cost a TCP handshake and a new thread, about
half of the loaded emulator's CPU in a profile.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from waitress.server import create_server

from robot.emulator.app import create_emulator_app, emulator_state
from robot.emulator.settings import EmulatorSettings
from robot.emulator.state import EmulatorState
from robot.heap import GrowingRecords, freeze_startup_objects

log = logging.getLogger(__name__)

#: Request threads of the tests' in-thread server: long polls (``?wait=``) hold one each.
THREADS = 16
#: Request threads under gunicorn: every worker's placing threads at once. More only add GIL
#: contention (waitress with 16 threads under the bench's 16 connections: 47 CPU-ms a create).
GUNICORN_THREADS = 8
#: Longest wait of the server's loop between its housekeeping passes (``stop()`` wakes it
#: through its trigger and does not wait for this).
LOOP_TIMEOUT = 0.05


def _make_server(settings: EmulatorSettings, host: str, port: int) -> tuple[Any, EmulatorState]:
    app = create_emulator_app(settings)
    state = emulator_state(app)
    try:
        server = create_server(
            app,
            host=host,
            port=port,
            threads=THREADS,
            ident="robot-emulator",
            asyncore_loop_timeout=LOOP_TIMEOUT,
            channel_timeout=120,
        )
    except BaseException:
        state.shutdown()
        raise
    return server, state


def serve_emulator(settings: EmulatorSettings, host: str, port: int) -> None:
    """Serve until interrupted: one gunicorn process (the calls live in its memory), threads.

    gunicorn, as for the web app: under the benchmark's load its threaded worker costs about
    half the CPU per request of waitress, which the tests' in-thread emulator uses.
    """
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        state: EmulatorState | None = None

        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", 1)
            self.cfg.set("threads", GUNICORN_THREADS)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", None)
            # One path per user ($HOME/.gunicorn) that every gunicorn on the machine would share.
            self.cfg.set("control_socket_disable", True)
            self.cfg.set("graceful_timeout", 5)
            self.cfg.set("keepalive", 75)  # the SDK's pooled connections stay open between calls
            self.cfg.set("worker_exit", self._worker_exit)

        def load(self) -> Any:
            app = create_emulator_app(settings)
            _Gunicorn.state = state = emulator_state(app)
            state.heap = GrowingRecords()
            freeze_startup_objects()
            log.info("Twilio emulator listening on http://%s:%s", host, port)
            return app

        @staticmethod
        def _worker_exit(_server: Any, _worker: Any) -> None:
            if _Gunicorn.state is not None:
                _Gunicorn.state.shutdown()

    _Gunicorn().run()


def _close(server: Any) -> None:
    """Close the listening socket, its wake-up trigger and every open connection.

    Only from the thread that runs the server's loop (or once it has stopped): closing a
    socket under another thread's select() makes that select() fail.
    """
    # Request threads first: one finishing a response still pulls the trigger. Long polls
    # have already returned (the state was shut down first).
    server.task_dispatcher.shutdown(timeout=1)
    while server._map:
        for dispatcher in list(server._map.values()):
            dispatcher.close()


@dataclass
class RunningEmulator:
    """An emulator serving from a background thread; ``stop()`` (or ``with``) ends it."""

    base_url: str
    state: EmulatorState
    server: Any = field(repr=False)
    thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        """Stop serving and end the emulator's threads; a second call does nothing."""
        self.state.shutdown()  # idempotent; ends long polls
        if not self.thread.is_alive():
            # The loop has ended (or never ran): nothing else will close its sockets, and a
            # listening socket left to the garbage collector warns in whatever runs then.
            _close(self.server)
            return
        # The loop thread closes everything itself (woken through its trigger), and with
        # nothing left to watch its loop returns.
        try:
            self.server.trigger.pull_trigger(lambda: _close(self.server))
        except OSError:
            # The trigger's pipe is already closed (seen once in a test run's teardown, cause
            # unknown): nothing can wake the loop, so close everything from here; its select()
            # then fails on the closed sockets and the loop ends.
            log.warning("emulator trigger closed before stop(); closing from this thread")
            _close(self.server)
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _serve(server: Any, state: EmulatorState) -> None:
    try:
        server.run()
    except (OSError, ValueError):
        # stop() closed the sockets from its own thread (the trigger was gone): the loop's
        # select() fails on them, which is how it ends then. Anything else is a real fault.
        if not state.closed:
            raise


def start_emulator_in_thread(
    settings: EmulatorSettings, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    server, state = _make_server(settings, host, port)
    thread = threading.Thread(
        target=_serve, args=(server, state), name="emulator-http", daemon=True
    )
    thread.start()
    return RunningEmulator(f"http://{host}:{server.effective_port}", state, server, thread)
