"""Process runners: the web app under gunicorn, and the settings the emulator is started with."""

from __future__ import annotations

import socket
from typing import Any

from robot.config import Settings


class PortInUse(Exception):
    """The web's address is taken by a socket it cannot share."""


def check_port(host: str, port: int, reuse_port: bool) -> None:
    """Fail at once if ``host:port`` cannot be bound. With ``reuse_port`` the gunicorn processes
    bind their own sockets after the fork, and a process that cannot bind exits and is started
    again, over and over, instead of stopping the server."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortInUse(f"cannot resolve {host}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve_web(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from robot.app import create_app

    if settings.server.reuse_port:
        check_port(host, port, reuse_port=True)

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
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
            from robot.heap import freeze_startup_objects

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
