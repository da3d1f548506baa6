"""Upstream feeds: API keys (shown once, stored hashed) and optional request signing."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from robot.models import Source, utcnow

KEY_PREFIX = "wr_"


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is enough (no slow KDF needed on the hot path).
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewSource:
    source: Source
    api_key: str
    signing_secret: str | None


class SourceError(ValueError):
    pass


def add_source(
    session: Session, name: str, callback_url: str | None = None, *, require_signature: bool = False
) -> NewSource:
    name = name.strip()
    if not name or len(name) > 100:
        raise SourceError("name: must be 1 to 100 characters")
    if session.scalar(select(Source.id).where(Source.name == name)) is not None:
        raise SourceError(f"name: a source called {name!r} already exists")
    if callback_url and not callback_url.startswith(("http://", "https://")):
        raise SourceError("callback-url: must be an http(s) URL")
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    # Every source gets a secret: it signs feedback, and signs intake when required.
    signing_secret = secrets.token_urlsafe(32)
    source = Source(
        name=name,
        key_hash=hash_key(api_key),
        key_prefix=api_key[:10],
        callback_url=callback_url or None,
        signing_secret=signing_secret,
        require_signature=require_signature,
    )
    session.add(source)
    session.flush()
    return NewSource(source, api_key, signing_secret)


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.name)))


def revoke_source(session: Session, name: str) -> Source:
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:
        raise SourceError(f"name: no source called {name!r}")
    if source.revoked_at is None:
        source.revoked_at = utcnow()
    return source


@dataclass(frozen=True)
class Caller:
    """The authenticated source of a request, detached from any session."""

    id: int
    name: str
    require_signature: bool
    signing_secret: str | None


# Built once: every intake request runs it, and building a statement costs more than running it.
_BY_KEY = select(Source.id, Source.name, Source.require_signature, Source.signing_secret).where(
    Source.key_hash == bindparam("key_hash"), Source.revoked_at.is_(None)
)


def find_by_key(db: Session | Connection, api_key: str) -> Caller | None:
    row = db.execute(_BY_KEY, {"key_hash": hash_key(api_key)}).first()
    return None if row is None else Caller(*row)


def body_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``timestamp.body``; used both ways (intake and feedback)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_body_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float, window: int
) -> str | None:
    """Return None when valid, else the reason (names the header at fault)."""
    if not timestamp:
        return "X-Robot-Timestamp: missing"
    if not signature:
        return "X-Robot-Signature: missing"
    try:
        sent = int(timestamp)
    except ValueError:
        return "X-Robot-Timestamp: must be Unix seconds"
    if abs(now - sent) > window:
        return "X-Robot-Timestamp: outside the replay window"
    if not hmac.compare_digest(body_signature(secret, timestamp, body), signature):
        return "X-Robot-Signature: does not match the body"
    return None
