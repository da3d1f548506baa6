"""Serve pre-rendered audio to Twilio's <Play>: ``GET /voice/audio/<sha256>.wav``.

``bp`` finds the cache directory at request time in
``current_app.extensions["robot"].settings.voice.cache_dir``;
``create_audio_blueprint(cache_dir)`` binds one explicitly (tests, other apps). Register one of
them, not both: they share the blueprint name "voice_audio".
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, send_file

_DIGEST = re.compile(r"[0-9a-f]{64}")
#: The URL names the content (a hash of text and voice), so it never changes: cache for a year.
_MAX_AGE = 365 * 24 * 3600


def create_audio_blueprint(cache_dir: str | Path | None = None) -> Blueprint:
    blueprint = Blueprint("voice_audio", __name__)

    @blueprint.get("/voice/audio/<digest>.wav")
    def audio(digest: str) -> Response | tuple[Response, int]:
        # Only a lower-case SHA-256 names a file: nothing else reaches the file system.
        if not _DIGEST.fullmatch(digest):
            return _not_found()
        directory = Path(cache_dir) if cache_dir is not None else _configured_cache_dir()
        # Resolved against the working directory, as the renderer wrote it (send_file would
        # take a relative path as relative to the app's root_path).
        path = (directory / f"{digest}.wav").resolve()
        if not path.is_file():
            return _not_found()
        response = send_file(path, mimetype="audio/wav", max_age=_MAX_AGE, conditional=True)
        response.headers["Cache-Control"] = f"public, max-age={_MAX_AGE}, immutable"
        return response

    return blueprint


def _configured_cache_dir() -> Path:
    return Path(current_app.extensions["robot"].settings.voice.cache_dir)


def _not_found() -> tuple[Response, int]:
    return jsonify(error="not_found", message="no audio with this id"), 404


bp = create_audio_blueprint()
