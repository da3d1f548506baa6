"""The worker's Core paths write what the ORM paths they replace wrote.

``review_due`` applies decisions that only schedule attempts (or do nothing) with Core
statements; the dispatcher reads an attempt, its case and contact in one query and records a
placement in one UPDATE. These tests run both ways on twin cases and compare the rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from robot import escalation
from robot.config import Settings
from robot.dispatch import STALE_AFTER, Claimed, Dispatcher, _Placed, _Target
from robot.emulator.server import RunningEmulator, start_emulator_in_thread
from robot.emulator.settings import EmulatorSettings
from robot.models import Attempt, Case, Contact, Event, IncomingWarning, OutboxMessage, utcnow
from robot.policy import Escalate
from robot.providers import ProviderError, Receipt
from robot.providers.twilio import TwilioProvider
from robot.sources import add_source


def _case(session: Session, source_id: int, phone: str, **fields: Any) -> Case:
    now = fields.pop("opened_at", None) or utcnow()
    case = Case(
        source_id=source_id,
        phone=phone,
        open_key=phone,
        risk=fields.pop("risk", "high"),
        fraud_type="fake_police",
        opened_at=now,
        updated_at=now,
        timezone="Asia/Shanghai",
        name="Wang",
        language="zh-CN",
        **fields,
    )
    session.add(case)
    session.flush()
    return case


def _attempts(session: Session, case_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(select(Attempt).where(Attempt.case_id == case_id).order_by(Attempt.id))
    skip = {"id", "code", "case_id", "to_phone"}
    return [
        {c.key: getattr(a, c.key) for c in Attempt.__table__.columns if c.key not in skip}
        for a in rows
    ]


def _events(session: Session, case_id: int) -> list[tuple[Any, ...]]:
    rows = session.scalars(select(Event).where(Event.case_id == case_id).order_by(Event.id))
    return [(e.kind, e.actor, e.data, e.at, e.attempt_id is not None) for e in rows]


@pytest.mark.parametrize(
    "fields",
    [
        {},  # high risk: SMS and call at once
        {"risk": "medium"},
        {"risk": "low"},
        {"sms_blocked": True},
        {"calls_blocked": True},
    ],
)
def test_a_review_writes_what_the_orm_review_wrote(
    settings: Settings, sessions: sessionmaker[Session], fields: dict[str, Any]
) -> None:
    with sessions.begin() as session:
        source = add_source(session, "paths").source
        opened = utcnow()
        fast = _case(session, source.id, "+8613800000001", opened_at=opened, **fields).id
        orm = _case(session, source.id, "+8613800000002", opened_at=opened, **fields).id
    for round_ in range(3):
        now = utcnow() + timedelta(minutes=round_)
        with sessions.begin() as session:
            session.execute(update(Case).where(Case.id == fast).values(next_review_at=now))
        assert escalation.review_due(sessions, settings, now) == 1
        with sessions.begin() as session:
            case = session.get(Case, orm)
            assert case is not None
            escalation.review_case(session, case, settings, now)
        with sessions() as session:
            assert _attempts(session, fast) == _attempts(session, orm)
            assert _events(session, fast) == _events(session, orm)
            a, b = session.get(Case, fast), session.get(Case, orm)
            assert a is not None and b is not None
            assert a.next_review_at == b.next_review_at
            assert (a.state, a.version, a.updated_at) == (b.state, b.version, b.updated_at)


def _outbox(session: Session, case_id: int) -> list[tuple[Any, ...]]:
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.case_id == case_id).order_by(OutboxMessage.kind)
    )
    skip = {"id", "case_id", "external_ids"}
    return [
        (
            m.source_id,
            m.kind,
            {k: v for k, v in m.payload.items() if k not in skip},
            [x.rsplit("-", 1)[0] for x in m.payload["external_ids"]],  # w-{n}-{twin}
            m.payload["case_id"] == case_id,
            m.created_at,
            m.next_try_at,
        )
        for m in rows
    ]


@pytest.mark.parametrize(
    ("fields", "outcome", "digits"),
    [
        ({}, "busy", None),  # busy: escalated and a retry, in one review
        ({}, "no_answer", None),  # the first call failed: escalated
        ({}, "no_answer", "3"),  # already paid: critical, no retry
        ({"state": "escalated", "escalated_at": "before"}, "busy", "2"),  # newly critical
        ({"state": "escalated", "escalated_at": "before", "critical": True}, "busy", "2"),
        ({"risk": "medium"}, "busy", None),  # a retry only
    ],
)
def test_an_escalating_review_writes_what_the_orm_review_wrote(
    settings: Settings,
    sessions: sessionmaker[Session],
    fields: dict[str, Any],
    outcome: str,
    digits: str | None,
) -> None:
    """The review after a failed call (escalation, retry, feedback to the sources) both ways."""
    opened = utcnow() - timedelta(minutes=2)
    if fields.get("escalated_at") == "before":
        fields = {**fields, "escalated_at": opened}
    cases: list[int] = []
    with sessions.begin() as session:
        source = add_source(session, "escalating", "https://source.example/feedback").source
        other = add_source(session, "merged", "https://other.example/feedback").source
        for i, phone in enumerate(("+8613800000021", "+8613800000022")):
            case = _case(session, source.id, phone, opened_at=opened, **fields)
            for n, source_id in enumerate((source.id, other.id, source.id)):
                session.add(
                    IncomingWarning(
                        source_id=source_id,
                        external_id=f"w-{n}-{i}",
                        case_id=case.id,
                        payload={},
                        received_at=opened,
                    )
                )
            for channel in ("sms", "call"):
                session.add(
                    Attempt(
                        case_id=case.id,
                        channel=channel,
                        purpose="warning",
                        to_phone=phone,
                        template=f"warning_{channel}",
                        due_at=opened,
                        placed_at=opened,
                        state="finished",
                        outcome="delivered" if channel == "sms" else outcome,
                        digits=digits if channel == "call" else None,
                        finished_at=opened + timedelta(minutes=1),
                        created_at=opened,
                    )
                )
            cases.append(case.id)
    fast, orm = cases
    now = utcnow()
    with sessions.begin() as session:
        session.execute(update(Case).where(Case.id == fast).values(next_review_at=now))
    assert escalation.review_due(sessions, settings, now) == 1
    with sessions.begin() as session:
        case = session.get(Case, orm)
        assert case is not None
        decision = escalation.review_case(session, case, settings, now)
    with sessions() as session:
        assert _attempts(session, fast) == _attempts(session, orm)
        assert _events(session, fast) == _events(session, orm)
        outbox = _outbox(session, fast)
        assert outbox == _outbox(session, orm)
        escalated = any(isinstance(action, Escalate) for action in decision.actions)
        assert len(outbox) == (2 if escalated else 0)  # one per source with a callback URL
        a, b = session.get(Case, fast), session.get(Case, orm)
        assert a is not None and b is not None
        columns = [
            c.key for c in Case.__table__.columns if c.key not in ("id", "phone", "open_key")
        ]
        assert [getattr(a, c) for c in columns] == [getattr(b, c) for c in columns]
    if fields.get("critical"):
        assert decision.actions == ()
    elif fields.get("risk") != "medium":
        assert any(isinstance(action, Escalate) for action in decision.actions)


@pytest.fixture
def placing(settings: Settings) -> Iterator[tuple[Settings, RunningEmulator]]:
    """Settings that place through the real SDK into an in-thread emulator, pacing off."""
    emulator = start_emulator_in_thread(
        EmulatorSettings(
            account_sid=settings.twilio.account_sid,
            auth_token=settings.twilio.auth_token,
            time_scale=200,
        )
    )
    yield (
        replace(
            settings,
            server=replace(settings.server, public_base_url="http://127.0.0.1:9"),
            twilio=replace(settings.twilio, api_base_url=emulator.base_url),
            worker=replace(settings.worker, calls_per_second=0, sms_per_second=0),
        ),
        emulator,
    )
    emulator.stop()


@pytest.mark.parametrize("to_contact", [False, True])
@pytest.mark.parametrize("channel", ["sms", "call"])
def test_placing_sends_the_request_and_records_the_placement(
    placing: tuple[Settings, RunningEmulator],
    sessions: sessionmaker[Session],
    channel: str,
    to_contact: bool,
) -> None:
    settings, emulator = placing
    now = utcnow()
    with sessions.begin() as session:
        source = add_source(session, "placing").source
        case = _case(session, source.id, "+8613800000003")
        contact = Contact(case_id=case.id, phone="+8613800000004", relation="daughter")
        session.add(contact)
        session.flush()
        attempt = Attempt(
            case_id=case.id,
            contact_id=contact.id if to_contact else None,
            channel=channel,
            purpose="contact_notice" if to_contact else "warning",
            to_phone=contact.phone if to_contact else case.phone,
            template="relatives_notice" if to_contact else f"warning_{channel}",
            due_at=now - timedelta(seconds=1),
        )
        session.add(attempt)
        session.flush()
        attempt_id, case_id = attempt.id, case.id
    dispatcher = Dispatcher(settings, sessions, TwilioProvider(settings.twilio), "w1")
    try:
        [claimed] = dispatcher.claim(channel, 10, utcnow())
        assert claimed == Claimed(attempt_id, channel, False)
        assert dispatcher.place(claimed) == 1
    finally:
        dispatcher.close()
    with sessions() as session:
        row = session.get(Attempt, attempt_id)
        case_row = session.get(Case, case_id)
        contact_row = session.get(Contact, row.contact_id) if row and row.contact_id else None
        assert row is not None and case_row is not None
        # What the provider received, as the emulator recorded it.
        if channel == "sms":
            [message] = emulator.state.messages.values()
            text = dispatcher.content.text(row.template, case_row, contact_row).text
            assert (message.sid, message.to, message.body) == (row.provider_sid, row.to_phone, text)
        else:
            [call] = emulator.state.calls.values()
            assert (call.sid, call.to) == (row.provider_sid, row.to_phone)
            assert (call.url or "").endswith(f"/twilio/call/{row.code}/twiml?round=1")
        assert (row.state, row.lease_until, row.claimed_by) == ("placed", None, "w1")
        assert row.provider_sid is not None and row.placed_at is not None
        [event] = session.scalars(select(Event).where(Event.attempt_id == attempt_id)).all()
        assert (event.kind, event.actor, event.case_id) == ("attempt.placed", "worker:w1", case_id)
        assert event.at == row.placed_at
        assert event.data == {
            "channel": channel,
            "purpose": row.purpose,
            "to": event.data["to"],
            "sid": row.provider_sid,
            "adopted": False,
        }
        assert event.data["to"] != row.to_phone  # masked


def _due_warning(session: Session, case: Case, channel: str, due_at: Any) -> int:
    """A warning SMS or call to the case's person, due at ``due_at``; its id."""
    attempt = Attempt(
        case_id=case.id,
        channel=channel,
        purpose="warning",
        to_phone=case.phone,
        template=f"warning_{channel}",
        due_at=due_at,
    )
    session.add(attempt)
    session.flush()
    return attempt.id


def test_a_callback_before_the_receipt_keeps_its_state_and_status(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """The provider's callback won the race with our receipt: neither state nor status go back."""
    now = utcnow()
    with sessions.begin() as session:
        source = add_source(session, "race").source
        case = _case(session, source.id, "+8613800000005")
        attempt_id, case_id = _due_warning(session, case, "call", now), case.id
    dispatcher = Dispatcher(settings, sessions, TwilioProvider(settings.twilio), "w1")
    try:
        [claimed] = dispatcher.claim("call", 1, utcnow())
        with sessions.begin() as session:
            session.execute(
                update(Attempt)
                .where(Attempt.id == attempt_id)
                .values(state="finished", provider_sid="CAearly", provider_status="busy")
            )
        target = _Target(claimed.id, case_id, "call", "warning", "+8613800000005", None)
        dispatcher._record([_Placed(target, Receipt("CAlate", "queued"), utcnow())])
    finally:
        dispatcher.close()
    with sessions() as session:
        row = session.get(Attempt, attempt_id)
        assert row is not None
        assert (row.state, row.provider_sid, row.provider_status) == ("finished", "CAearly", "busy")
        assert row.lease_until is not None  # untouched: only a claimed attempt is changed
        assert row.placed_at is not None


@pytest.mark.parametrize("lease_left", [0.0, 3600.0])
def test_an_attempt_whose_lease_is_ending_is_handed_back_unsent(
    placing: tuple[Settings, RunningEmulator], sessions: sessionmaker[Session], lease_left: float
) -> None:
    """Sending that close to the end of the lease could let another worker send it too."""
    settings, emulator = placing
    with sessions.begin() as session:
        source = add_source(session, "lease").source
        case = _case(session, source.id, "+8613800000021")
        attempt_id = _due_warning(session, case, "sms", utcnow())
    dispatcher = Dispatcher(settings, sessions, TwilioProvider(settings.twilio), "w1")
    try:
        [claimed] = dispatcher.claim("sms", 1, utcnow())
        placed = dispatcher._place_share([claimed], deadline=time.time() + lease_left)
    finally:
        dispatcher.close()
    with sessions() as session:
        row = session.get(Attempt, attempt_id)
        assert row is not None
        if lease_left:  # time enough: sent and recorded
            assert (placed, row.state, len(emulator.state.messages)) == (1, "placed", 1)
        else:
            assert (placed, row.state, row.claimed_by, row.provider_sid) == (
                0,
                "scheduled",
                None,
                None,
            )
            assert not emulator.state.messages


def test_new_cases_come_first_in_the_reviews_due(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """A case due its first review goes before older reviews (after callbacks, retries)."""
    now = utcnow()
    with sessions.begin() as session:
        source = add_source(session, "order").source
        old = _case(session, source.id, "+8613800000011", next_review_at=now - timedelta(minutes=5))
        session.add(
            Attempt(
                case_id=old.id,
                channel="call",
                purpose="warning",
                to_phone=old.phone,
                template="warning_call",
                due_at=now - timedelta(minutes=6),
                state="finished",
            )
        )
        new = _case(session, source.id, "+8613800000012", next_review_at=now)
        later = _case(session, source.id, "+8613800000013", next_review_at=now + timedelta(hours=1))
        old_id, new_id, later_id = old.id, new.id, later.id
    assert escalation.due_cases(sessions, now) == ([new_id], [old_id])
    assert later_id not in escalation.due_cases(sessions, now + timedelta(minutes=1))[1]
    # A burst of new cases (more than a pass takes) still leaves the older ones their share.
    assert escalation.due_cases(sessions, now + timedelta(hours=2), limit=1) == (
        [new_id],
        [old_id],
    )
    assert escalation.review_due(sessions, settings, now) == 2


class _Recording:
    """A provider that takes every request and remembers the order they came in."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def place_call(self, request: Any) -> Receipt:
        self.sent.append(("call", request.to))
        return Receipt(f"CA{len(self.sent):032d}", "queued")

    def send_sms(self, request: Any) -> Receipt:
        self.sent.append(("sms", request.to))
        return Receipt(f"SM{len(self.sent):032d}", "queued")


def test_a_batch_is_claimed_calls_first_and_every_placement_is_recorded(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """Calls are claimed (and so placed) ahead of SMS; placements recorded a few at a time
    all end up placed, each with its event."""
    worker = replace(settings.worker, calls_per_second=0, sms_per_second=0, max_concurrent_calls=0)
    settings = replace(settings, worker=worker)
    now = utcnow()
    ids: list[int] = []
    with sessions.begin() as session:
        source = add_source(session, "batch").source
        for i in range(30):
            case = _case(session, source.id, f"+86138000001{i:02d}")
            for channel in ("sms", "call"):
                attempt = Attempt(
                    case_id=case.id,
                    channel=channel,
                    purpose="warning",
                    to_phone=case.phone,
                    template=f"warning_{channel}",
                    due_at=now - timedelta(seconds=1),
                )
                session.add(attempt)
                session.flush()
                ids.append(attempt.id)
    provider = _Recording()
    dispatcher = Dispatcher(settings, sessions, provider, "w1", threads=1)
    try:
        claimed = dispatcher.claim_channels(("call", "sms"), 100, utcnow())
        assert [c.channel for c in claimed] == ["call"] * 30 + ["sms"] * 30
        with sessions.begin() as session:  # back to scheduled: run_once claims them itself
            session.execute(
                update(Attempt).values(
                    state="scheduled", claimed_by=None, lease_until=None, first_claimed_at=None
                )
            )
        assert dispatcher.run_once() == 60
    finally:
        dispatcher.close()
    assert [kind for kind, _ in provider.sent] == ["call"] * 30 + ["sms"] * 30
    with sessions() as session:
        rows = session.scalars(select(Attempt).where(Attempt.id.in_(ids))).all()
        assert {a.state for a in rows} == {"placed"}
        assert len({a.provider_sid for a in rows}) == 60
        placed = session.scalars(
            select(Event.attempt_id).where(Event.kind == "attempt.placed")
        ).all()
        assert sorted(placed) == sorted(ids)


class _ConfirmedDuringTheCall(TwilioProvider):
    """The person confirms (on an earlier call, say) while the call request is under way."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], case_id: int) -> None:
        super().__init__(settings.twilio)
        self.sessions, self.case_id = sessions, case_id

    def place_call(self, request: Any) -> Receipt:
        with self.sessions.begin() as session:
            session.execute(
                update(Case).where(Case.id == self.case_id).values(confirmed_at=utcnow())
            )
        time.sleep(STALE_AFTER + 0.05)  # long enough for the rows read before it to be stale
        return super().place_call(request)


def test_a_case_confirmed_while_its_call_is_placed_gets_no_sms(
    placing: tuple[Settings, RunningEmulator], sessions: sessionmaker[Session]
) -> None:
    """Attempts placed one after the other (one placing thread): the SMS, read before the slow
    call request, is checked against the case again, and cancelled as no longer needed."""
    settings, emulator = placing
    now = utcnow()
    with sessions.begin() as session:
        source = add_source(session, "stale").source
        case = _case(session, source.id, "+8613800000201")
        call_id = _due_warning(session, case, "call", now - timedelta(seconds=1))
        sms_id = _due_warning(session, case, "sms", now - timedelta(seconds=1))
        case_id = case.id
    provider = _ConfirmedDuringTheCall(settings, sessions, case_id)
    dispatcher = Dispatcher(settings, sessions, provider, "w1", threads=1)
    try:
        assert dispatcher.run_once() == 1
    finally:
        dispatcher.close()
    [call_sent] = emulator.state.calls.values()
    assert call_sent.to == "+8613800000201"
    assert not emulator.state.messages
    with sessions() as session:
        call, sms = (session.get(Attempt, i) for i in (call_id, sms_id))
        assert call is not None and sms is not None
        assert (call.state, call.provider_sid) == ("placed", call_sent.sid)
        assert (sms.state, sms.error_message, sms.provider_sid) == ("canceled", "confirmed", None)


class _CreatedButTimedOut(TwilioProvider):
    """The call is created, but the answer is lost (the client timed out, say)."""

    def place_call(self, request: Any) -> Receipt:
        super().place_call(request)
        raise ProviderError("provider unreachable: ReadTimeoutError", permanent=False)


@pytest.mark.parametrize("created", [True, False])
def test_a_call_create_without_an_answer_is_looked_up_before_it_is_retried(
    placing: tuple[Settings, RunningEmulator], sessions: sessionmaker[Session], created: bool
) -> None:
    """No callback tells of a call before it is answered or ends: a create that timed out is
    checked with the provider at once, and adopted if the call exists (else retried)."""
    settings, emulator = placing
    with sessions.begin() as session:
        source = add_source(session, "timeout").source
        case = _case(session, source.id, "+8613800000301")
        attempt_id = _due_warning(session, case, "call", utcnow() - timedelta(seconds=1))
    if created:
        provider: TwilioProvider = _CreatedButTimedOut(settings.twilio)
    else:
        provider = TwilioProvider(settings.twilio)
        emulator.state.faults.add("calls", 1, 503, None)
    dispatcher = Dispatcher(settings, sessions, provider, "w1")
    try:
        dispatcher.run_once()
    finally:
        dispatcher.close()
    with sessions() as session:
        row = session.get(Attempt, attempt_id)
        assert row is not None
        kinds = session.scalars(select(Event.kind).where(Event.attempt_id == attempt_id)).all()
        if created:
            [call] = emulator.state.calls.values()
            assert (row.state, row.provider_sid, row.tries) == ("placed", call.sid, 0)
            [event] = session.scalars(select(Event).where(Event.attempt_id == attempt_id)).all()
            assert (event.kind, event.data["adopted"]) == ("attempt.placed", True)
        else:
            assert not emulator.state.calls
            assert (row.state, row.provider_sid, row.tries) == ("scheduled", None, 1)
            assert kinds == ["attempt.retrying"]
