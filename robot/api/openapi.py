"""The OpenAPI 3 document of the source-facing API, built from the same constants the code checks."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

import robot
from robot.intake.validation import MAX_CONTACTS, RELATIONS
from robot.models import (
    AttemptState,
    CaseState,
    Channel,
    Disposition,
    FraudType,
    Outcome,
    Purpose,
    Risk,
    Trigger,
)

bp = Blueprint("openapi", __name__)


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value if hasattr(v, "value") else v for v in values]}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def build_document(max_batch: int = 1000) -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    schemas: dict[str, Any] = {
        "Contact": {
            "type": "object",
            "additionalProperties": False,
            "required": ["phone", "relation"],
            "properties": {
                "phone": {
                    "type": "string",
                    "description": "Any common format; read in the default region",
                },
                "relation": _enum(RELATIONS),
                "name": {"type": "string", "maxLength": 200},
            },
        },
        "Warning": {
            "type": "object",
            "additionalProperties": False,
            "required": ["external_id", "phone"],
            "properties": {
                "external_id": {
                    "oneOf": [
                        {"type": "string", "minLength": 1, "maxLength": 200},
                        {"type": "integer"},
                    ],
                    "description": "The source's own id; sending it again returns the same case",
                },
                "phone": {
                    "type": "string",
                    "description": "Any common format, normalised to E.164",
                },
                "risk": {**_enum(Risk), "default": "medium"},
                "fraud_type": {**_enum(FraudType), "default": "other"},
                "name": {"type": "string", "maxLength": 200},
                "language": {"type": "string", "example": "zh-CN"},
                "trigger": _enum(Trigger),
                "area": {"type": "string", "maxLength": 100},
                "address": {"type": "string", "maxLength": 500},
                "occurred_at": {**time, "description": "ISO 8601 with an offset"},
                "note": {"type": "string", "maxLength": 2000},
                "contacts": {
                    "type": "array",
                    "maxItems": MAX_CONTACTS,
                    "items": {"$ref": "#/components/schemas/Contact"},
                },
            },
        },
        "Batch": {
            "type": "object",
            "additionalProperties": False,
            "required": ["warnings"],
            "properties": {
                "warnings": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_batch,
                    "items": {"description": "A Warning; each item is checked on its own"},
                }
            },
        },
        "FieldProblem": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {"type": "string", "example": "warnings[3].phone"},
                "message": {"type": "string"},
                "index": {"type": "integer"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                        "fields": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/FieldProblem"},
                        },
                    },
                }
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["status", "http_status", "case_id"],
            "properties": {
                "status": _enum(["created", "merged", "duplicate"]),
                "http_status": {"type": "integer", "enum": [200, 202]},
                "case_id": {"type": "integer"},
            },
        },
        "ItemResult": {
            "type": "object",
            "required": ["status", "http_status", "index"],
            "properties": {
                "status": _enum(["created", "merged", "duplicate", "rejected"]),
                "http_status": {"type": "integer", "enum": [200, 202, 422]},
                "case_id": {"type": "integer"},
                "index": {"type": "integer"},
                "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldProblem"}},
            },
        },
        "BatchResult": {
            "type": "object",
            "required": ["accepted", "duplicates", "rejected", "results"],
            "properties": {
                "accepted": {"type": "integer"},
                "duplicates": {"type": "integer"},
                "rejected": {"type": "integer"},
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/ItemResult"}},
                "error": {"$ref": "#/components/schemas/Error/properties/error"},
            },
        },
        "Attempt": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "channel": _enum(Channel),
                "purpose": _enum(Purpose),
                "to": {"type": "string", "description": "Masked number"},
                "template": {"type": "string"},
                "state": _enum(AttemptState),
                "outcome": _nullable(_enum(Outcome)),
                "provider_status": _nullable({"type": "string"}),
                "answered_by": _nullable({"type": "string"}),
                "digits": _nullable({"type": "string"}),
                "error_code": _nullable({"type": "string"}),
                "due_at": time,
                "placed_at": _nullable(time),
                "finished_at": _nullable(time),
            },
        },
        "Case": {
            "type": "object",
            "required": ["id", "phone", "state", "risk", "fraud_type", "attempts", "timeline"],
            "properties": {
                "id": {"type": "integer"},
                "phone": {"type": "string", "description": "Masked number, e.g. +86138****8000"},
                "state": _enum(CaseState),
                "risk": _enum(Risk),
                "fraud_type": _enum(FraudType),
                "trigger": _nullable(_enum(Trigger)),
                "critical": {"type": "boolean"},
                "disposition": _nullable(_enum(Disposition)),
                "opened_at": time,
                "confirmed_at": _nullable(time),
                "escalated_at": _nullable(time),
                "closed_at": _nullable(time),
                "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
                "timeline": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["at", "kind", "actor", "data"],
                        "properties": {
                            "at": time,
                            "kind": {"type": "string"},
                            "actor": {"type": "string"},
                            "data": {"type": "object"},
                        },
                    },
                },
            },
        },
    }
    auth_errors = {
        "401": _error("Missing, unknown or revoked API key, or a bad body signature"),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Warning Robot API",
            "version": robot.__version__,
            "description": "Upstream anti-fraud feeds post warning targets; the robot texts and "
            "calls them at once and escalates what it cannot close.",
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/warnings": {
                "post": {
                    "summary": f"Post one warning, or a batch of up to {max_batch}",
                    "parameters": [
                        {
                            "name": "X-Robot-Timestamp",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Unix seconds; with X-Robot-Signature, within 5 minutes",
                        },
                        {
                            "name": "X-Robot-Signature",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "sha256=HEX of HMAC-SHA256(secret, timestamp + '.' + body)",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Warning"},
                                        {"$ref": "#/components/schemas/Batch"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted: a new case (single) or at least one accepted item (batch)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Accepted"},
                                            {"$ref": "#/components/schemas/BatchResult"},
                                        ]
                                    }
                                }
                            },
                        },
                        "200": {
                            "description": "Already received: the same case as before",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Accepted"},
                                            {"$ref": "#/components/schemas/BatchResult"},
                                        ]
                                    }
                                }
                            },
                        },
                        "400": _error("Malformed JSON"),
                        **auth_errors,
                        "413": _error("Body or batch too large"),
                        "415": _error("Not application/json"),
                        "422": _error(
                            "Invalid fields (a batch answers with BatchResult and its error)"
                        ),
                    },
                }
            },
            "/api/v1/cases/{case_id}": {
                "get": {
                    "summary": "A case this source fed: state, attempts, timeline",
                    "parameters": [
                        {
                            "name": "case_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The case",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Case"}
                                }
                            },
                        },
                        **auth_errors,
                        "404": _error("No such case for this source"),
                    },
                }
            },
        },
    }


@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    from robot.app import services

    return jsonify(build_document(services().settings.intake.max_batch))
