"""Staff accounts: create them, check passwords, count failed sign-ins and lock accounts.

Passwords are hashed with scrypt (werkzeug.security). The hash is checked outside any database
transaction, so a slow hash never holds SQLite's write lock; the failure counter is bumped with
an atomic UPDATE, so parallel guesses cannot lose counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from robot.config import DashboardSettings
from robot.dashboard.i18n import LANGUAGES
from robot.models import Role, Staff, utcnow
from robot.phones import InvalidNumber, parse_number
from robot.timeline import record

HASH_METHOD = "scrypt"
MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
#: Checked against when the username is unknown, so that case takes as long as a real check.
_DUMMY_HASH = generate_password_hash("not a password of anyone", method=HASH_METHOD)


class AccountError(ValueError):
    """A staff field is invalid; the message names it."""


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=HASH_METHOD)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise AccountError("password: no leading or trailing spaces")


def add_staff(
    session: Session,
    username: str,
    password: str,
    *,
    role: str = Role.OPERATOR.value,
    display_name: str | None = None,
    area: str | None = None,
    language: str = "zh-CN",
    phone: str | None = None,
    default_region: str = "CN",
) -> Staff:
    """Create a member of staff (the caller's transaction); AccountError names a bad field."""
    if not _USERNAME.match(username):
        raise AccountError("name: 1 to 80 letters, digits, '.', '_' or '-', starting alphanumeric")
    if session.scalar(select(Staff.id).where(Staff.username == username)) is not None:
        raise AccountError(f"name: {username!r} already exists")
    if role not in {r.value for r in Role}:
        raise AccountError(f"role: one of {', '.join(r.value for r in Role)}")
    if language not in LANGUAGES:
        raise AccountError(f"language: one of {', '.join(LANGUAGES)}")
    check_password_strength(password)
    e164 = None
    if phone:
        try:
            e164 = parse_number(phone, default_region).e164
        except InvalidNumber as exc:
            raise AccountError(f"phone: {exc}") from None
    staff = Staff(
        username=username,
        display_name=(display_name or username).strip()[:200],
        password_hash=hash_password(password),
        role=role,
        area=(area or "").strip() or None,
        language=language,
        phone=e164,
        failed_logins=0,
        active=True,
        created_at=utcnow(),
    )
    session.add(staff)
    session.flush()
    record(session, None, "staff.added", "system", {"username": username, "role": role})
    return staff


def set_password(session: Session, staff: Staff, password: str) -> None:
    check_password_strength(password)
    staff.password_hash = hash_password(password)
    staff.failed_logins = 0
    staff.locked_until = None


def unlock(session: Session, staff: Staff, actor: str) -> None:
    staff.failed_logins = 0
    staff.locked_until = None
    record(session, None, "staff.unlocked", actor, {"username": staff.username})


# --- signing in ---------------------------------------------------------------------------------


class LoginStatus(StrEnum):
    OK = "ok"
    BAD = "bad_password"
    UNKNOWN = "unknown_user"
    INACTIVE = "inactive"
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginResult:
    status: LoginStatus
    staff_id: int | None = None
    password_hash: str = ""
    locked_until: datetime | None = None
    #: Consecutive failures so far (0 after a success or a fresh lock); sets the slow-down.
    failures: int = 0


def actor_for(username: str) -> str:
    """The event actor for a sign-in; an unknown username is cut and stripped of odd characters."""
    clean = "".join(ch for ch in username if ch.isprintable() and not ch.isspace())[:80]
    return f"staff:{clean or '?'}"


def attempt_login(
    sessions: sessionmaker[Session],
    username: str,
    password: str,
    settings: DashboardSettings,
    now: datetime | None = None,
) -> LoginResult:
    """Check a sign-in and record it as an event (case_id NULL); lock after too many failures."""
    now = now or utcnow()
    with sessions() as session:
        row = session.execute(
            select(Staff.id, Staff.password_hash, Staff.active, Staff.locked_until).where(
                Staff.username == username
            )
        ).first()
    if row is None:
        check_password_hash(_DUMMY_HASH, password)
        return _failed(sessions, username, LoginResult(LoginStatus.UNKNOWN), now)
    staff_id, password_hash, active, locked_until = row
    if locked_until is not None and locked_until > now:
        return _failed(
            sessions, username, LoginResult(LoginStatus.LOCKED, staff_id, "", locked_until), now
        )
    good = check_password_hash(password_hash, password)
    if not active:
        return _failed(sessions, username, LoginResult(LoginStatus.INACTIVE, staff_id), now)
    if not good:
        return _bad_password(sessions, username, staff_id, settings, now)
    with sessions.begin() as session:
        # Only if not locked meanwhile (a parallel guess may have tripped the lock).
        done = session.execute(
            update(Staff)
            .where(
                Staff.id == staff_id,
                (Staff.locked_until.is_(None)) | (Staff.locked_until <= now),
            )
            .values(failed_logins=0, locked_until=None)
        )
        if int(done.rowcount or 0) != 1:  # type: ignore[attr-defined]
            until = session.scalar(select(Staff.locked_until).where(Staff.id == staff_id))
            record(
                session,
                None,
                "staff.login_failed",
                actor_for(username),
                {"reason": LoginStatus.LOCKED.value},
                at=now,
            )
            return LoginResult(LoginStatus.LOCKED, staff_id, "", until)
        record(session, None, "staff.login", actor_for(username), {}, at=now)
    return LoginResult(LoginStatus.OK, staff_id, password_hash)


def _bad_password(
    sessions: sessionmaker[Session],
    username: str,
    staff_id: int,
    settings: DashboardSettings,
    now: datetime,
) -> LoginResult:
    with sessions.begin() as session:
        failures = session.execute(
            update(Staff)
            .where(Staff.id == staff_id)
            .values(failed_logins=Staff.failed_logins + 1)
            .returning(Staff.failed_logins)
        ).scalar_one()
        data: dict[str, object] = {"reason": LoginStatus.BAD.value, "failures": failures}
        locked_until = None
        if failures >= settings.max_failed_logins:
            locked_until = now + timedelta(minutes=settings.lockout_minutes)
            session.execute(
                update(Staff)
                .where(Staff.id == staff_id)
                .values(failed_logins=0, locked_until=locked_until)
            )
            data["locked_until"] = locked_until.isoformat()
        record(session, None, "staff.login_failed", actor_for(username), data, at=now)
    status = LoginStatus.LOCKED if locked_until else LoginStatus.BAD
    return LoginResult(status, staff_id, "", locked_until, failures)


def _failed(
    sessions: sessionmaker[Session], username: str, result: LoginResult, now: datetime
) -> LoginResult:
    data: dict[str, object] = {"reason": result.status.value}
    if result.locked_until is not None:
        data["locked_until"] = result.locked_until.isoformat()
    with sessions.begin() as session:
        record(session, None, "staff.login_failed", actor_for(username), data, at=now)
    return LoginResult(result.status, result.staff_id, "", result.locked_until, 1)


def failure_delay(result: LoginResult, settings: DashboardSettings) -> float:
    """Seconds to hold a failed sign-in's answer: longer with each consecutive failure."""
    if result.status is LoginStatus.OK:
        return 0.0
    base = settings.failed_login_delay_seconds
    return min(base * max(1, result.failures), base * 5)
