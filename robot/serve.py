"""Process runners: the web app under gunicorn, and the settings the emulator is started with."""

from __future__ import annotations

import socket
from typing import Any

from robot.config import Settings


class PortInUse(Exception):
    """The web's address is taken by a socket it cannot share."""


#: How long a gunicorn thread waits for a new connection's first request before handing the
#: connection back to the process's poller. gunicorn 27 (benoitc/gunicorn#3518) gives every new
#: connection to a thread at once and waits up to 5 s there, so four idle connections (a load
#: balancer's TCP check, a browser's preconnect) would stall a process of four threads for 5 s.
NEW_CONNECTION_WAIT_SECONDS = 0.05


def bind_address(host: str, port: int) -> str:
    """gunicorn's ``bind`` for ``host`` and ``port`` (an IPv6 address in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def check_port(host: str, port: int, reuse_port: bool) -> None:
    """Fail at once if ``host:port`` cannot be bound. With ``reuse_port`` the gunicorn processes
    bind their own sockets after the fork, and a process that cannot bind exits and is started
    again, over and over, instead of stopping the server. The address and family are worked out
    by gunicorn's own functions, so the probe binds what gunicorn will."""
    from gunicorn import util

    address = util.parse_address(bind_address(host, port))
    family = socket.AF_INET6 if util.is_ipv6(address[0]) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PortInUse(f"cannot listen on {bind_address(host, port)}: {reason}") from None


def serve_web(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from robot.app import create_app

    if settings.server.reuse_port:
        check_port(host, port, reuse_port=True)

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", bind_address(host, port))
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread" if threads > 1 else "sync")
            self.cfg.set("accesslog", None)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("keepalive", 5)
            self.cfg.set("reuse_port", settings.server.reuse_port)
            # One path per user ($HOME/.gunicorn) that every gunicorn on the machine would share.
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from gunicorn.workers import gthread

            from robot.heap import freeze_startup_objects

            # Read by the thread at each new connection (tests/integration/test_web_listeners.py
            # fails if a gunicorn release stops honouring it).
            gthread.DEFAULT_WORKER_DATA_TIMEOUT = NEW_CONNECTION_WAIT_SECONDS
            # Built in each gunicorn process after the fork: no shared connections.
            app = create_app(settings)
            freeze_startup_objects()
            return app

    _Gunicorn().run()


def emulator_settings(settings: Settings) -> Any:
    from robot.emulator.settings import EmulatorSettings

    base = settings.server.public_base_url.rstrip("/")
    return EmulatorSettings(
        account_sid=settings.twilio.account_sid,
        auth_token=settings.twilio.auth_token,
        api_key_sid=settings.twilio.api_key_sid,
        api_key_secret=settings.twilio.api_key_secret,
        time_scale=settings.emulator.time_scale,
        calls_per_second=settings.emulator.calls_per_second,
        max_concurrent_calls=settings.emulator.max_concurrent_calls,
        callees=dict(settings.emulator.callees),
        inbound_sms_url=f"{base}/twilio/inbound/sms",
        inbound_voice_url=f"{base}/twilio/inbound/call",
    )
