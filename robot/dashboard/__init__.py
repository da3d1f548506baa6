"""The call-center dashboard: staff sign in, work the queue of escalated cases, supervise.

Modules: ``web`` (blueprint, session, CSRF, errors), ``accounts`` (passwords, lockout),
``auth`` (sign-in views), ``claims`` (exclusive claims, urgency, SLA), ``queue``,
``case_views``, ``actions`` (every staff action, through casework), ``supervision`` (reports),
``drill``, ``i18n`` and ``cli`` (``robot staff ...``).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask
from sqlalchemy.engine import make_url

from robot.config import ConfigError, Settings

log = logging.getLogger(__name__)


def register_dashboard(app: Flask) -> None:
    """Attach the dashboard to the app (views are imported here, so their routes exist)."""
    from robot.dashboard import (  # noqa: F401  (each module adds its routes to bp)
        actions,
        auth,
        case_views,
        queue,
        supervision,
    )
    from robot.dashboard.web import bp

    settings: Settings = app.extensions["robot"].settings
    check_settings(settings)
    if not settings.server.secret_key:
        key = shared_secret(settings)
        if key:
            app.secret_key = key
    if settings.server.public_base_url.startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
    app.register_blueprint(bp)


def check_settings(settings: Settings) -> None:
    d = settings.dashboard
    try:
        ZoneInfo(d.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"dashboard.timezone: unknown time zone {d.timezone!r}") from None
    if d.default_language not in ("zh-CN", "en-US"):
        raise ConfigError("dashboard.default_language: expected zh-CN or en-US")
    for key in (
        "claim_minutes",
        "max_failed_logins",
        "lockout_minutes",
        "sla_critical_minutes",
        "sla_high_minutes",
        "sla_medium_minutes",
        "sla_low_minutes",
        "poll_seconds",
        "session_hours",
        "queue_limit",
    ):
        if getattr(d, key) <= 0:
            raise ConfigError(f"dashboard.{key}: must be positive, got {getattr(d, key)}")
    if d.failed_login_delay_seconds < 0:
        raise ConfigError("dashboard.failed_login_delay_seconds: must not be negative")


def shared_secret(settings: Settings) -> str | None:
    """A cookie-signing key every web process of one SQLite install agrees on.

    With no ``server.secret_key`` each gunicorn process would invent its own, and a sign-in
    would only work on the process that made it. For the embedded SQLite default the key is
    kept in a 0600 file beside the database; with PostgreSQL set server.secret_key.
    """
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        log.warning("server.secret_key is not set: dashboard sign-ins last one process only")
        return None
    path = Path(url.database).with_suffix(".dashboard-key")
    try:
        return _read_or_create(path)
    except OSError as exc:
        log.warning("cannot keep the dashboard key in %s: %s", path, exc)
        return None


def _read_or_create(path: Path) -> str:
    if path.exists():
        key = path.read_text(encoding="ascii").strip()
        if key:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32))
    try:
        os.link(temporary, path)  # atomic: the first process to get here wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()
