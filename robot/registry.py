"""Where each subsystem's blueprint is attached to the app."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from robot.voice.audio import create_audio_blueprint
    from robot.webhooks.calls import bp as calls_bp
    from robot.webhooks.messages import bp as messages_bp

    app.register_blueprint(calls_bp)
    app.register_blueprint(messages_bp)
    settings = app.extensions["robot"].settings
    app.register_blueprint(create_audio_blueprint(settings.voice.cache_dir))

    from robot.dashboard import register_dashboard

    register_dashboard(app)
