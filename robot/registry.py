"""Where each subsystem's blueprint is attached to the app."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    return None
