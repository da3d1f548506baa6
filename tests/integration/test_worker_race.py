"""Several workers over the same due attempts: each placed exactly once; a dead worker loses nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from robot.config import Settings
from robot.emulator.server import RunningEmulator, start_emulator_in_thread
from robot.emulator.settings import EmulatorSettings
from robot.models import Attempt, AttemptState, Case, Event, utcnow
from robot.providers import CallRequest, ProviderError
from robot.sources import add_source
from robot.telephony.urls import WebhookUrls
from robot.worker import Worker, build_provider


@pytest.fixture
def emulator(settings: Settings) -> Iterator[RunningEmulator]:
    running = start_emulator_in_thread(
        EmulatorSettings(
            account_sid=settings.twilio.account_sid,
            auth_token=settings.twilio.auth_token,
            time_scale=200,
        )
    )
    yield running
    running.stop()


@pytest.fixture
def worker_settings(settings: Settings, emulator: RunningEmulator) -> Settings:
    return replace(
        settings,
        # Callbacks go nowhere: this test is about placing, not outcomes.
        server=replace(settings.server, public_base_url="http://127.0.0.1:9"),
        twilio=replace(settings.twilio, api_base_url=emulator.base_url),
        worker=replace(
            settings.worker,
            calls_per_second=0,
            sms_per_second=0,
            max_concurrent_calls=0,
            lease_seconds=1,
            batch_size=20,
        ),
    )


def backlog(sessions: sessionmaker[Session], count: int, channel: str = "sms") -> list[int]:
    now = utcnow()
    with sessions.begin() as session:
        source = add_source(session, f"race-{time.monotonic_ns()}").source
        ids = []
        for i in range(count):
            phone = f"+86138{i:08d}"
            case = Case(
                source_id=source.id,
                phone=phone,
                open_key=phone,
                risk="high",
                fraud_type="fake_police",
                opened_at=now,
                updated_at=now,
                timezone="Asia/Shanghai",
            )
            session.add(case)
            session.flush()
            attempt = Attempt(
                case_id=case.id,
                channel=channel,
                purpose="warning",
                to_phone=phone,
                template=f"warning_{channel}" if channel == "sms" else "warning_call",
                due_at=now - timedelta(seconds=1),
            )
            session.add(attempt)
            session.flush()
            ids.append(attempt.id)
    return ids


def created(emulator: RunningEmulator, kind: str) -> Counter[str]:
    records = requests.get(f"{emulator.base_url}/_emulator/requests", timeout=10).json()
    return Counter(
        r["params"]["To"]
        for r in records
        if r["method"] == "POST" and r["path"].endswith(f"/{kind}.json")
    )


def test_four_workers_place_each_attempt_exactly_once(
    worker_settings: Settings, sessions: sessionmaker[Session], emulator: RunningEmulator
) -> None:
    ids = backlog(sessions, 120)
    # Leases long enough to cover placing a whole batch (the dead-worker tests use short ones).
    worker_settings = replace(
        worker_settings, worker=replace(worker_settings.worker, lease_seconds=30)
    )
    workers = [
        Worker(worker_settings, sessions, build_provider(worker_settings), f"w{i}")
        for i in range(4)
    ]
    barrier = threading.Barrier(4)
    placed = [0] * 4

    def run(i: int) -> None:
        barrier.wait()
        for _ in range(10):
            placed[i] += workers[i].dispatcher.run_once()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for worker in workers:
        worker.close()
    per_number = created(emulator, "Messages")
    assert len(per_number) == len(ids)
    assert set(per_number.values()) == {1}  # never twice
    assert sum(placed) == len(ids)
    with sessions() as session:
        states = Counter(session.scalars(select(Attempt.state).where(Attempt.id.in_(ids))))
        assert states == {AttemptState.PLACED.value: len(ids)}
        claimers = Counter(session.scalars(select(Attempt.claimed_by).where(Attempt.id.in_(ids))))
    assert len(claimers) > 1  # the work really was shared


def test_a_worker_that_dies_after_claiming_leaves_nothing_stuck(
    worker_settings: Settings, sessions: sessionmaker[Session], emulator: RunningEmulator
) -> None:
    ids = backlog(sessions, 5)
    doomed = Worker(worker_settings, sessions, build_provider(worker_settings), "doomed")
    claimed = doomed.dispatcher.claim("sms", 10, utcnow())
    assert {c.id for c in claimed} == set(ids)
    doomed.close()  # dies before placing anything
    survivor = Worker(worker_settings, sessions, build_provider(worker_settings), "survivor")
    assert survivor.dispatcher.run_once() == 0  # leases still held
    time.sleep(worker_settings.worker.lease_seconds + 0.2)
    # All five in the first pass, as a rule. With a 1 s lease, a slow pass (a loaded CI machine)
    # hands back an attempt whose lease is about to end rather than send it: the next pass
    # takes it. Either way each is sent exactly once.
    placed = [survivor.dispatcher.run_once() for _ in range(5)]
    survivor.close()
    assert sum(placed) == 5, placed
    assert set(created(emulator, "Messages").values()) == {1}
    assert len(created(emulator, "Messages")) == 5


def test_a_worker_that_dies_after_the_provider_took_the_call_does_not_call_twice(
    worker_settings: Settings, sessions: sessionmaker[Session], emulator: RunningEmulator
) -> None:
    [attempt_id] = backlog(sessions, 1, channel="call")
    doomed = Worker(worker_settings, sessions, build_provider(worker_settings), "doomed")
    [claim] = doomed.dispatcher.claim("call", 1, utcnow())
    with sessions() as session:
        attempt = session.get(Attempt, attempt_id)
        assert attempt is not None
        urls = WebhookUrls(worker_settings.server.public_base_url)
        # The provider accepts the call; the worker dies before recording it.
        receipt = doomed.provider.place_call(
            CallRequest(
                to=attempt.to_phone,
                from_="+15005550006",
                twiml_url=urls.call_twiml(attempt.code),
                status_callback=urls.call_status(attempt.code),
                amd_callback=None,
                ring_timeout=30,
            )
        )
    doomed.close()
    time.sleep(worker_settings.worker.lease_seconds + 0.2)
    survivor = Worker(worker_settings, sessions, build_provider(worker_settings), "survivor")
    assert survivor.dispatcher.run_once() == 1
    survivor.close()
    assert list(created(emulator, "Calls").values()) == [1]
    with sessions() as session:
        adopted = session.get(Attempt, attempt_id)
        assert adopted is not None
        assert (adopted.state, adopted.provider_sid) == (AttemptState.PLACED.value, receipt.sid)
    del claim


def test_a_text_whose_callback_came_before_it_was_recorded_is_not_sent_again(
    worker_settings: Settings, sessions: sessionmaker[Session], emulator: RunningEmulator
) -> None:
    """The first claimant sent the SMS and died before recording it; the provider's status
    callback already wrote the SID: the next claimant adopts it instead of texting twice."""
    [attempt_id] = backlog(sessions, 1, channel="sms")
    doomed = Worker(worker_settings, sessions, build_provider(worker_settings), "doomed")
    [claim] = doomed.dispatcher.claim("sms", 1, utcnow())
    doomed.close()
    with sessions.begin() as session:  # as the "sent" callback leaves it (webhooks/messages.py)
        attempt = session.get(Attempt, attempt_id)
        assert attempt is not None
        attempt.provider_sid, attempt.provider_status = "SM" + "0" * 32, "sent"
    time.sleep(worker_settings.worker.lease_seconds + 0.2)
    survivor = Worker(worker_settings, sessions, build_provider(worker_settings), "survivor")
    assert survivor.dispatcher.run_once() == 1
    survivor.close()
    assert created(emulator, "Messages") == {}  # nothing sent again
    with sessions() as session:
        adopted = session.get(Attempt, attempt_id)
        assert adopted is not None
        assert (adopted.state, adopted.provider_sid) == (AttemptState.PLACED.value, "SM" + "0" * 32)
        placed = session.scalars(
            select(Event).where(Event.attempt_id == attempt_id, Event.kind == "attempt.placed")
        ).one()
        assert placed.data["adopted"] is True
    del claim


def test_attempts_whose_callbacks_never_came_are_reconciled(
    worker_settings: Settings, sessions: sessionmaker[Session], emulator: RunningEmulator
) -> None:
    # Callbacks go to a closed port, as when our webhooks were down: only a fetch can tell.
    [attempt_id] = backlog(sessions, 1, channel="sms")
    # A long lease: the fixture's 1 s one leaves a loaded machine half a second to claim and
    # send, after which the attempt is handed back unsent; this test needs no lease to end.
    worker_settings = replace(
        worker_settings,
        worker=replace(worker_settings.worker, reconcile_after_seconds=0, lease_seconds=30),
    )
    worker = Worker(worker_settings, sessions, build_provider(worker_settings), "w1")
    assert worker.dispatcher.run_once() == 1

    def reconciled() -> bool:
        worker.reconcile()
        with sessions() as session:
            attempt = session.get(Attempt, attempt_id)
            return attempt is not None and attempt.outcome == "delivered"

    deadline = time.monotonic() + 10
    while not reconciled():
        assert time.monotonic() < deadline, "the attempt was never reconciled"
        time.sleep(0.1)
    worker.close()
    with sessions() as session:
        case_id = session.scalar(select(Attempt.case_id).where(Attempt.id == attempt_id))
        case = session.get(Case, case_id)
        assert case is not None and case.next_review_at is not None  # the policy looks again


class TimesOutAfterCreating:
    """The provider takes the call but the answer never reaches us (a read timeout)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.failed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def place_call(self, request: CallRequest) -> object:
        receipt = self.real.place_call(request)  # type: ignore[attr-defined]
        if not self.failed:
            self.failed = True
            raise ProviderError("provider unreachable: ReadTimeout", permanent=False)
        return receipt


def test_a_timeout_after_the_provider_took_the_call_does_not_call_twice(
    worker_settings: Settings, sessions: sessionmaker[Session], emulator: RunningEmulator
) -> None:
    [attempt_id] = backlog(sessions, 1, channel="call")
    # A long lease, as above: the one pass must not run out of lease on a loaded machine.
    worker_settings = replace(
        worker_settings, worker=replace(worker_settings.worker, lease_seconds=30)
    )
    provider = TimesOutAfterCreating(build_provider(worker_settings))
    worker = Worker(worker_settings, sessions, provider, "w1")  # type: ignore[arg-type]
    # After the timeout the provider is asked at once: it has the call, which is adopted.
    assert worker.dispatcher.run_once() == 1
    assert worker.dispatcher.run_once() == 0  # nothing left to place, nothing placed again
    worker.close()
    assert list(created(emulator, "Calls").values()) == [1]
    with sessions() as session:
        attempt = session.get(Attempt, attempt_id)
        assert attempt is not None and attempt.state == AttemptState.PLACED.value
