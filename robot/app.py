"""The web application: intake API, case API, Twilio webhooks, voice audio, dashboard."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Request, Response, current_app, jsonify
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import IntegerConverter

from robot.config import Settings, load_settings
from robot.db import create_db_engine, create_session_factory
from robot.intake.group import GroupWriter
from robot.wakeup import Waker


@dataclass
class Services:
    """Everything a request needs, built once per process; lives in app.extensions["robot"]."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    waker: Waker
    #: Writes intake requests, grouping those that arrive while another is being written.
    intake_writer: GroupWriter
    extras: dict[str, Any] = field(default_factory=dict)


class RowIdConverter(IntegerConverter):
    """A row id in a URL: a larger number is simply not found (it would overflow the column)."""

    def __init__(self, map: Any) -> None:
        super().__init__(map, max=2**63 - 1)


class MachineSessionInterface(SecureCookieSessionInterface):
    """No cookie session for machine endpoints (the API, webhooks, audio): they never use one.

    Opening one costs a signing-serializer set-up on every request, a measurable share of a
    status callback; sign-ins only ever happen on the dashboard.
    """

    MACHINE_PREFIXES = ("/api/", "/twilio/", "/voice/")

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(self.MACHINE_PREFIXES):
            return self.null_session_class()
        return super().open_session(app, request)


def services() -> Services:
    found: Services = current_app.extensions["robot"]
    return found


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> Flask:
    settings = settings or load_settings()
    engine = engine or create_db_engine(settings.database)
    app = Flask(__name__)
    app.url_map.converters["id"] = RowIdConverter
    app.session_interface = MachineSessionInterface()
    app.config.update(
        MAX_CONTENT_LENGTH=settings.server.max_body_bytes,
        SECRET_KEY=settings.server.secret_key or secrets.token_hex(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.server.secure_cookies,
        JSON_SORT_KEYS=False,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    logging.getLogger("robot").setLevel(settings.log_level.upper())
    waker = Waker(engine)
    app.extensions["robot"] = Services(
        settings=settings,
        engine=engine,
        sessions=create_session_factory(engine),
        waker=waker,
        intake_writer=GroupWriter(engine, waker),
    )

    from robot.api import errors
    from robot.api.cases import bp as cases_bp
    from robot.api.intake import bp as intake_bp
    from robot.api.openapi import bp as openapi_bp

    errors.install(app)
    app.register_blueprint(intake_bp)
    app.register_blueprint(cases_bp)
    app.register_blueprint(openapi_bp)
    _register_optional(app)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app


def _register_optional(app: Flask) -> None:
    """Blueprints of the later subsystems (webhooks, voice, dashboard)."""
    from robot.registry import register_blueprints

    register_blueprints(app)
