"""Drills: practice warnings for the emulator's test numbers, so new staff train on real flows.

A drill case goes through the same intake, policy, worker and webhooks as a real one; it is
only marked ``Case.drill`` (a DRILL badge, left out of every figure). Drills are refused when the
provider is the real Twilio: the test numbers +861380013800X are ordinary mobile numbers there.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from robot.config import Settings
from robot.intake.service import accept_warning
from robot.intake.validation import validate_warning
from robot.models import Case, FraudType, Source, utcnow
from robot.sources import Caller, add_source
from robot.timeline import record
from robot.wakeup import Waker

DRILL_SOURCE = "drill"
#: Emulator callees that end up with a human (see robot.emulator.callees): 2 presses 3 (already
#: paid), 3 answers and presses nothing, 5 never answers, 6 is busy, 7 is an answering machine,
#: 4 hangs up, 8 is unreachable, 1 asks for an officer. Used in this order.
DEFAULT_DIGITS: tuple[str, ...] = ("2", "3", "5", "6", "7", "4", "8", "1")
#: The relative on every drill case: answers and presses 1.
DRILL_CONTACT = "+8613800138000"
MAX_DRILL = 20


class DrillRefused(RuntimeError):
    """Not against the emulator ("provider"), or every drill number has a real case ("numbers")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DrillCase:
    case_id: int
    phone: str
    created: bool  #: False when it joined an open drill case for the same number


def drill_number(digit: str) -> str:
    if len(digit) != 1 or not digit.isdigit():
        raise ValueError(f"drill digit must be 0-9, got {digit!r}")
    return f"+861380013800{digit}"


def against_emulator(settings: Settings) -> bool:
    """True unless the provider is the real Twilio API."""
    host = (urlsplit(settings.twilio.api_base_url).hostname or "").lower()
    return not (host == "twilio.com" or host.endswith(".twilio.com"))


def _drill_source(session: Session) -> Caller:
    """The source drill warnings come from: no callback URL, and its key revoked at once."""
    source = session.scalar(select(Source).where(Source.name == DRILL_SOURCE))
    if source is None:
        source = add_source(session, DRILL_SOURCE).source
        source.revoked_at = utcnow()  # nobody can post as the drill source over the API
    return Caller(source.id, source.name, False, None)


def post_drill(
    sessions: sessionmaker[Session],
    settings: Settings,
    actor: str,
    *,
    count: int = 3,
    digits: Sequence[str] = DEFAULT_DIGITS,
    area: str | None = None,
    language: str | None = None,
    now: datetime | None = None,
    waker: Waker | None = None,
) -> list[DrillCase]:
    """Post ``count`` practice warnings (high risk) in one transaction; returns their cases."""
    if not against_emulator(settings):
        raise DrillRefused(
            "provider", "drills run only against the emulator, not the real provider"
        )
    if not 1 <= count <= MAX_DRILL:
        raise ValueError(f"count must be 1 to {MAX_DRILL}")
    numbers = [drill_number(d) for d in digits] or [drill_number(d) for d in DEFAULT_DIGITS]
    now = now or utcnow()
    fraud_types = [f.value for f in FraudType if f is not FraudType.OTHER]
    batch = secrets.token_hex(4)
    posted: list[DrillCase] = []
    with sessions.begin() as session:
        source = _drill_source(session)
        # Never touch a real case that happens to have a test number.
        taken = set(
            session.scalars(
                select(Case.phone).where(Case.open_key.in_(numbers), Case.drill.is_(False))
            )
        )
        usable = [n for n in numbers if n not in taken]
        if not usable:
            raise DrillRefused("numbers", "every drill number has a real open case")
        for i in range(count):
            phone = usable[i % len(usable)]
            item: dict[str, object] = {
                "external_id": f"drill-{batch}-{i}",
                "phone": phone,
                "risk": "high",
                "fraud_type": fraud_types[(i + now.minute) % len(fraud_types)],
                "trigger": "fraud_call",
                "name": "DRILL",
                "note": "practice warning",
                "contacts": [{"phone": DRILL_CONTACT, "relation": "parent"}],
            }
            if area:
                item["area"] = area
            if language:
                item["language"] = language
            checked = validate_warning(item, settings.intake.default_region, now)
            if isinstance(checked, list):
                raise ValueError("; ".join(f"{e.field}: {e.message}" for e in checked))
            accepted = accept_warning(session, source, checked, now)
            case_ = session.get(Case, accepted.case_id)
            assert case_ is not None
            created = not case_.drill
            case_.drill = True
            record(
                session,
                case_.id,
                "drill.posted",
                actor,
                {"batch": batch, "behaviour_digit": phone[-1]},
                at=now,
            )
            posted.append(DrillCase(case_.id, phone, created))
        if waker is not None:
            waker.in_transaction(session)
    if waker is not None:
        waker.after_commit()
    return posted
