"""Check one warning as the source sent it; pure, no database.

Every problem becomes a FieldError naming the field (``contacts[1].phone``), so a source can
fix its feed without reading our code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from robot.models import FraudType, Risk, Trigger
from robot.phones import InvalidNumber, ParsedNumber, parse_number

RELATIONS = (
    "parent",
    "spouse",
    "child",
    "sibling",
    "relative",
    "friend",
    "employer",
    "colleague",
    "guard",  # a volunteer anti-fraud guard
    "community",  # community or grid worker
    "other",
)
FIELDS = {
    "external_id",
    "phone",
    "risk",
    "fraud_type",
    "name",
    "language",
    "trigger",
    "area",
    "address",
    "occurred_at",
    "note",
    "contacts",
}
CONTACT_FIELDS = {"phone", "relation", "name"}
MAX_CONTACTS = 20
E = TypeVar("E", Risk, FraudType, Trigger)
#: The longest language tag a case holds (its column's length; the tag pattern alone allows 30).
LANGUAGE_MAX = 20
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
#: Clocks differ; an occurred_at a little in the future is skew, far in the future is a bug.
_FUTURE_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self, index: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"field": self.field, "message": self.message}
        if index is not None:
            body["index"] = index
        return body


@dataclass(frozen=True)
class ContactInput:
    phone: ParsedNumber
    relation: str
    name: str | None


@dataclass(frozen=True)
class WarningInput:
    external_id: str
    phone: ParsedNumber
    risk: Risk
    fraud_type: FraudType
    name: str | None
    language: str | None
    trigger: Trigger | None
    area: str | None
    address: str | None
    occurred_at: datetime | None
    note: str | None
    contacts: tuple[ContactInput, ...]
    #: The item exactly as received, stored verbatim.
    raw: dict[str, Any]


def validate_warning(
    item: Any, default_region: str, now: datetime
) -> WarningInput | list[FieldError]:
    """Return the checked warning, or every problem found in it."""
    if not isinstance(item, dict):
        return [FieldError("(item)", "must be a JSON object")]
    errors: list[FieldError] = [
        FieldError(key, "is not a known field") for key in sorted(set(item) - FIELDS)
    ]
    external_id = _external_id(item.get("external_id"), errors)
    phone = _phone(item.get("phone"), "phone", default_region, errors, required=True)
    risk = _choice(item, "risk", Risk, Risk.MEDIUM, errors)
    fraud_type = _choice(item, "fraud_type", FraudType, FraudType.OTHER, errors)
    trigger = _choice(item, "trigger", Trigger, None, errors)
    name = _text(item, "name", 200, errors)
    area = _text(item, "area", 100, errors)
    address = _text(item, "address", 500, errors)
    note = _text(item, "note", 2000, errors)
    language = _text(item, "language", LANGUAGE_MAX, errors)
    if language is not None and not _LANGUAGE_TAG.match(language):
        errors.append(FieldError("language", "must be a language tag such as zh-CN or en"))
    occurred_at = _timestamp(item.get("occurred_at"), now, errors)
    contacts = _contacts(item.get("contacts"), default_region, errors)
    if errors or external_id is None or phone is None:
        return errors
    return WarningInput(
        external_id=external_id,
        phone=phone,
        risk=risk or Risk.MEDIUM,
        fraud_type=fraud_type or FraudType.OTHER,
        name=name,
        language=language,
        trigger=trigger,
        area=area,
        address=address,
        occurred_at=occurred_at,
        note=note,
        contacts=tuple(contacts),
        raw=item,
    )


def _external_id(value: Any, errors: list[FieldError]) -> str | None:
    if value is None:
        errors.append(FieldError("external_id", "is required"))
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        errors.append(FieldError("external_id", "must be a string"))
        return None
    text = str(value).strip()
    if not text or len(text) > 200:
        errors.append(FieldError("external_id", "must be 1 to 200 characters"))
        return None
    return text


def _phone(
    value: Any, field: str, region: str, errors: list[FieldError], *, required: bool
) -> ParsedNumber | None:
    if value is None:
        if required:
            errors.append(FieldError(field, "is required"))
        return None
    if not isinstance(value, str):
        errors.append(FieldError(field, "must be a string"))
        return None
    try:
        return parse_number(value, region)
    except InvalidNumber as exc:
        errors.append(FieldError(field, str(exc)))
        return None


def _choice(
    item: dict[str, Any], field: str, enum: type[E], default: E | None, errors: list[FieldError]
) -> E | None:
    value = item.get(field)
    if value is None:
        return default
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        errors.append(FieldError(field, f"must be one of: {allowed}"))
        return default


def _text(item: dict[str, Any], field: str, limit: int, errors: list[FieldError]) -> str | None:
    value = item.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError(field, "must be a string"))
        return None
    value = value.strip()
    if len(value) > limit:
        errors.append(FieldError(field, f"must be at most {limit} characters"))
        return None
    return value or None


def _timestamp(value: Any, now: datetime, errors: list[FieldError]) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError("occurred_at", "must be an ISO 8601 time string"))
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors.append(
            FieldError("occurred_at", "must be an ISO 8601 time, e.g. 2026-11-21T09:30:00+08:00")
        )
        return None
    if parsed.tzinfo is None:
        errors.append(FieldError("occurred_at", "must include a time zone offset"))
        return None
    parsed = parsed.astimezone(UTC)
    if parsed > now + _FUTURE_SLACK:
        errors.append(FieldError("occurred_at", "is in the future"))
        return None
    return parsed


def _contacts(value: Any, region: str, errors: list[FieldError]) -> list[ContactInput]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(FieldError("contacts", "must be a list"))
        return []
    if len(value) > MAX_CONTACTS:
        errors.append(FieldError("contacts", f"at most {MAX_CONTACTS} contacts"))
        return []
    contacts = []
    for i, entry in enumerate(value):
        where = f"contacts[{i}]"
        if not isinstance(entry, dict):
            errors.append(FieldError(where, "must be an object"))
            continue
        for key in sorted(set(entry) - CONTACT_FIELDS):
            errors.append(FieldError(f"{where}.{key}", "is not a known field"))
        phone = _phone(entry.get("phone"), f"{where}.phone", region, errors, required=True)
        relation = entry.get("relation")
        if relation not in RELATIONS:
            errors.append(
                FieldError(f"{where}.relation", "must be one of: " + ", ".join(RELATIONS))
            )
        name = _text(entry, "name", 200, [])
        if entry.get("name") is not None and not isinstance(entry.get("name"), str):
            errors.append(FieldError(f"{where}.name", "must be a string"))
        if phone is not None and relation in RELATIONS:
            contacts.append(ContactInput(phone, str(relation), name))
    return contacts
