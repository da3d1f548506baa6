"""The emulator's Flask application."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from robot.emulator.control import control
from robot.emulator.errors import error_body
from robot.emulator.rest import api
from robot.emulator.settings import EmulatorSettings
from robot.emulator.state import EmulatorState


def create_emulator_app(settings: EmulatorSettings) -> Flask:
    """A Twilio-compatible carrier; its state (and ``shutdown()``) is ``app.extensions["emulator"]``.

    Background threads start here: call ``app.extensions["emulator"].shutdown()`` when done.
    """
    app = Flask("robot.emulator")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["emulator"] = EmulatorState(settings)
    app.register_blueprint(api)
    app.register_blueprint(control)
    app.register_error_handler(HTTPException, _http_error)
    return app


def emulator_state(app: Flask) -> EmulatorState:
    state: EmulatorState = app.extensions["emulator"]
    return state


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if request.path.startswith("/2010-04-01/"):
        code = 20404 if status == 404 else status
        body = error_body(status, code, error.description or error.name)
    else:
        body = {"error": error.description or error.name}
    response = jsonify(body)
    response.status_code = status
    return response
