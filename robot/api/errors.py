"""JSON errors for the API: every refusal names the field at fault."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        fields: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.fields = fields
        self.extra = extra or {}

    def response(self) -> Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.fields is not None:
            body["fields"] = self.fields
        response = jsonify({"error": body, **self.extra})
        response.status_code = self.status
        return response


_HTTP_CODES = {
    400: ("bad_request", "body"),
    404: ("not_found", "path"),
    405: ("method_not_allowed", "method"),
    413: ("too_large", "body"),
    415: ("unsupported_media_type", "Content-Type"),
}


def install(app: Flask) -> None:
    """JSON for every error under /api/ and /twilio/, including ones Flask raises itself."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error.response()

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response | HTTPException:
        if not request.path.startswith(("/api/", "/twilio/", "/voice/")):
            return error
        status = error.code or 500
        code, field = _HTTP_CODES.get(status, ("error", None))
        message = error.description or error.name
        if status == 413:
            message = "the request body is larger than the service accepts"
        return ApiError(status, code, message, field=field).response()

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return ApiError(
            500, "internal_error", "the service failed; the request was not applied"
        ).response()
