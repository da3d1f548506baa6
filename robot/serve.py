"""Process runners: the web app under gunicorn, and the settings the emulator is started with."""

from __future__ import annotations

from typing import Any

from robot.config import Settings


def serve_web(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from robot.app import create_app

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
