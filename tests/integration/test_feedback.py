"""Case state changes reach the source's callback URL: signed, retried, each with an id."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from flask import Flask, request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from robot import casework, feedback
from robot.config import Settings
from robot.models import Case, IncomingWarning, OutboxMessage, utcnow
from robot.sources import NewSource, add_source, body_signature


class Receiver:
    """A source's callback endpoint that fails the first ``failures`` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        app = Flask("receiver")

        @app.post("/feedback")
        def receive() -> tuple[str, int]:
            self.received.append({"headers": dict(request.headers), "body": request.get_data()})
            if self.failures > 0:
                self.failures -= 1
                return "try later", 503
            return "ok", 200

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/feedback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fed_case(session: Session, url: str, external_id: str, now: datetime) -> tuple[NewSource, Case]:
    """An open case fed by one warning from a source whose callback is ``url``."""
    created = add_source(session, "bank", url)
    case = Case(
        source_id=created.source.id,
        phone="+8613800138000",
        open_key="+8613800138000",
        risk="high",
        fraud_type="romance",
        opened_at=now,
        updated_at=now,
    )
    session.add(case)
    session.flush()
    warning = IncomingWarning(
        source_id=created.source.id,
        external_id=external_id,
        case_id=case.id,
        payload={},
        received_at=now,
    )
    session.add(warning)
    return created, case


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(failures=2)
    yield running
    running.stop()


def test_feedback_is_signed_retried_until_acknowledged_and_delivered_once(
    settings: Settings, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    now = utcnow()
    with sessions.begin() as session:
        created, case = fed_case(session, receiver.url, "ext-7", now)
        casework.escalate(session, case, "no answer", "robot", now)
    secret = created.signing_secret
    assert secret
    http = requests.Session()
    clock = now
    for _ in range(3):
        feedback.deliver_due(sessions, settings.feedback, "w1", clock, http)
        clock += timedelta(seconds=settings.feedback.max_backoff_seconds)
    http.close()
    assert len(receiver.received) == 3  # two refusals, then acknowledged
    ids = {r["headers"]["X-Robot-Message-Id"] for r in receiver.received}
    assert len(ids) == 1  # the same message id every time: duplicates are harmless
    last = receiver.received[-1]
    assert last["headers"]["X-Robot-Signature"] == body_signature(
        secret, last["headers"]["X-Robot-Timestamp"], last["body"]
    )
    payload = json.loads(last["body"])
    assert (payload["type"], payload["case_id"], payload["external_ids"], payload["state"]) == (
        "case.escalated",
        case.id,
        ["ext-7"],
        "escalated",
    )
    with sessions() as session:
        message = session.scalars(select(OutboxMessage)).one()
        assert message.delivered_at is not None and message.tries == 2
    # Delivered messages are not sent again.
    again = requests.Session()
    assert (
        feedback.deliver_due(sessions, settings.feedback, "w1", clock + timedelta(days=1), again)
        == 0
    )
    again.close()
    assert len(receiver.received) == 3


def test_backoff_waits_before_the_next_try(
    settings: Settings, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    now = utcnow()
    with sessions.begin() as session:
        _, case = fed_case(session, receiver.url, "x", now)
        casework.confirm(session, case, "person", "call", now)
    http = requests.Session()
    feedback.deliver_due(sessions, settings.feedback, "w1", now, http)
    feedback.deliver_due(sessions, settings.feedback, "w1", now, http)  # too early for a retry
    http.close()
    assert len(receiver.received) == 1
    assert json.loads(receiver.received[0]["body"])["type"] == "case.reached"
