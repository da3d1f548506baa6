"""Run the emulator: blocking (``serve_emulator``) or in a background thread (tests)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from robot.emulator.app import create_emulator_app, emulator_state
from robot.emulator.settings import EmulatorSettings
from robot.emulator.state import EmulatorState

log = logging.getLogger(__name__)


class QuietRequestHandler(WSGIRequestHandler):
    """Logs requests at DEBUG instead of one stderr line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s %s", self.command, self.path, code)


def _make_server(settings: EmulatorSettings, host: str, port: int) -> BaseWSGIServer:
    app = create_emulator_app(settings)
    try:
        return make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)
    except BaseException:
        emulator_state(app).shutdown()
        raise


def serve_emulator(settings: EmulatorSettings, host: str, port: int) -> None:
    """Serve until interrupted (threaded werkzeug server)."""
    server = _make_server(settings, host, port)
    state = emulator_state(server.app)  # type: ignore[arg-type]
    log.info("Twilio emulator listening on http://%s:%s", host, server.server_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        state.shutdown()


@dataclass
class RunningEmulator:
    """An emulator serving from a background thread; ``stop()`` (or ``with``) ends it."""

    base_url: str
    state: EmulatorState
    server: BaseWSGIServer = field(repr=False)
    thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()
        self.state.shutdown()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_emulator_in_thread(
    settings: EmulatorSettings, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    server = _make_server(settings, host, port)
    state = emulator_state(server.app)  # type: ignore[arg-type]
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="emulator-http",
        daemon=True,
    )
    thread.start()
    return RunningEmulator(f"http://{host}:{server.server_port}", state, server, thread)
