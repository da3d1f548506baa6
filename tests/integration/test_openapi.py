"""The OpenAPI document matches what the endpoints really accept and answer."""

from __future__ import annotations

from typing import Any

import jsonschema
from flask.testing import FlaskClient

from robot.intake.validation import FIELDS


def to_json_schema(node: Any, document: dict[str, Any]) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: resolve $refs, turn `nullable` into a null type."""
    if isinstance(node, list):
        return [to_json_schema(item, document) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = document
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return to_json_schema(target, document)
    out = {
        key: to_json_schema(value, document)
        for key, value in node.items()
        if key not in ("nullable", "example", "default")
    }
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def response_schema(document: dict[str, Any], path: str, method: str, status: int) -> Any:
    content = document["paths"][path][method]["responses"][str(status)]["content"][
        "application/json"
    ]["schema"]
    return to_json_schema(content, document)


def test_the_document_is_served_and_lists_every_warning_field(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["components"]["schemas"]["Warning"]["properties"]) == FIELDS


def test_real_answers_validate_against_the_document(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    warnings_path = "/api/v1/warnings"
    body = {
        "external_id": "o-1",
        "phone": "13800138000",
        "risk": "high",
        "fraud_type": "fake_police",
        "contacts": [{"phone": "13900139000", "relation": "parent"}],
    }
    request_schema = to_json_schema(
        document["paths"][warnings_path]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ],
        document,
    )
    jsonschema.validate(body, request_schema)
    created = client.post(warnings_path, json=body, headers=auth)
    jsonschema.validate(created.get_json(), response_schema(document, warnings_path, "post", 202))
    duplicate = client.post(warnings_path, json=body, headers=auth)
    jsonschema.validate(duplicate.get_json(), response_schema(document, warnings_path, "post", 200))
    batch = client.post(
        warnings_path,
        json={"warnings": [{**body, "external_id": "o-2"}, {"phone": "x"}]},
        headers=auth,
    )
    jsonschema.validate(batch.get_json(), response_schema(document, warnings_path, "post", 202))
    for status, response in (
        (422, client.post(warnings_path, json={"phone": "x"}, headers=auth)),
        (401, client.post(warnings_path, json=body)),
        (415, client.post(warnings_path, data="x", headers={**auth, "Content-Type": "text/plain"})),
        (
            400,
            client.post(
                warnings_path, data="{", headers={**auth, "Content-Type": "application/json"}
            ),
        ),
    ):
        assert response.status_code == status
        jsonschema.validate(
            response.get_json(), response_schema(document, warnings_path, "post", status)
        )
    case_path = "/api/v1/cases/{case_id}"
    case = client.get(f"/api/v1/cases/{created.get_json()['case_id']}", headers=auth)
    jsonschema.validate(case.get_json(), response_schema(document, case_path, "get", 200))
    missing = client.get("/api/v1/cases/99999", headers=auth)
    jsonschema.validate(missing.get_json(), response_schema(document, case_path, "get", 404))


def test_an_invalid_item_is_also_invalid_by_the_document(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    schema = to_json_schema(document["components"]["schemas"]["Warning"], document)
    validator = jsonschema.Draft7Validator(schema)
    assert not validator.is_valid({"external_id": "x", "phone": "1", "risk": "extreme"})
    assert not validator.is_valid({"external_id": "x", "phone": "1", "colour": "red"})
    assert validator.is_valid({"external_id": 7, "phone": "+8613800138000"})
