"""The worker: the only process that runs APScheduler, used as a clock.

The database is the schedule. Each tick reviews the cases that are due (the policy), runs the
commands waiting on live calls, and places due attempts. A wake-up from the web process makes
the tick run at once; polling stays as the fallback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, timedelta
from typing import Any

import requests
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from robot import escalation, feedback
from robot.config import Settings
from robot.db import (
    create_db_engine,
    create_session_factory,
    is_postgres,
    read_only_options,
    read_session,
)
from robot.dispatch import COMMAND_WAITS, Dispatcher
from robot.heap import freeze_startup_objects
from robot.models import Attempt, AttemptState, Case, Channel, utcnow
from robot.providers import Provider, ProviderError
from robot.telephony.twiml import Document
from robot.timeline import record
from robot.wakeup import WakeListener
from robot.webhooks.outcomes import apply_call_status, apply_sms_status

log = logging.getLogger(__name__)

_ANY_COMMAND = select(COMMAND_WAITS)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        provider: Provider,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.provider = provider
        self.worker_id = worker_id or settings.worker.worker_id or default_worker_id()
        self.dispatcher = Dispatcher(settings, sessions, provider, self.worker_id)
        self.http = requests.Session()
        engine = sessions.kw["bind"]
        self._read_engine = engine.execution_options(**read_only_options(engine))
        self._dirty = threading.Event()
        self._ticking = threading.Lock()
        #: Set when a tick stopped at its deadline with work still coming: the next tick should
        #: start at once, not at the next poll interval (a backlog lost up to a second per tick).
        self.behind = threading.Event()

    def wake(self) -> None:
        self._dirty.set()

    def tick(self) -> int:
        """Do everything that is due; loop while there is more (a wake-up may come meanwhile).

        Runs in one thread at a time: called while another thread is in a tick, it only makes
        that tick go round once more.
        """
        done = 0
        while self._ticking.acquire(blocking=False):
            try:
                done += self._tick()
            finally:
                self._ticking.release()
            # A wake-up that came after the tick's last look, while it still held the lock,
            # found it busy and only set the flag: go round for it.
            if not self._dirty.is_set():
                return done
        self._dirty.set()  # another thread is ticking: it goes round once more
        return done

    def _tick(self) -> int:
        done = 0
        deadline = time.monotonic() + 5.0
        while True:
            self._dirty.clear()
            now = utcnow()
            # What is due, in one read (no lock): reviews, channels to claim, commands. A pass
            # used to make three or four of these reads, and under load most passes find
            # little: each wake-up ends with one pass that finds nothing.
            with self._read_engine.connect() as conn:
                first, others = escalation.read_due_cases(conn, now)
                look = self.dispatcher.look(conn, now)
            # New cases first, and their warnings placed at once: they wait neither for the
            # reviews after other cases' callbacks nor for the commands (time to dial).
            work = escalation.review_cases(self.sessions, self.settings, first, now)
            placed = False
            if work:
                work += self.dispatcher.run_once()  # looks again: the new cases' attempts
                placed = True
            work += escalation.review_cases(self.sessions, self.settings, others, now)
            if look.command:
                work += self._run_commands()
            if look.ready and not placed:
                work += self.dispatcher.run_once(ready=look.ready)
            # What this pass did may have made more due now (a review that scheduled an
            # attempt, a batch that hit its limit): the next pass's read finds it.
            done += work
            if not work and not self._dirty.is_set():
                return done
            if time.monotonic() > deadline:
                self.behind.set()
                return done

    def run_commands(self) -> int:
        """Leave voicemails on calls a machine answered (the webhook only flagged them)."""
        # Almost every pass has none: look first without SQLite's write lock (or a session).
        with self._read_engine.connect() as conn:
            if not conn.execute(_ANY_COMMAND).scalar():
                return 0
        return self._run_commands()

    def _run_commands(self) -> int:
        with self.sessions.begin() as session:
            postgres = is_postgres(session.get_bind())
            # The partial index ix_attempts_pending_command makes this a lookup, not a scan.
            query = select(
                Attempt.id, Attempt.pending_command, Attempt.provider_sid, Attempt.case_id
            ).where(Attempt.pending_command.is_not(None), Attempt.provider_sid.is_not(None))
            if postgres:
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query.limit(50)).all()
            if rows:
                # Taken by this worker: cleared in the same transaction that read them.
                session.execute(
                    update(Attempt)
                    .where(Attempt.id.in_([r.id for r in rows]))
                    .values(pending_command=None)
                )
        for attempt_id, command, sid, case_id in rows:
            if command != "voicemail":
                continue
            with self.sessions() as session:
                case = session.get(Case, case_id)
                speech = self.dispatcher.content.speech("voicemail", case)
            try:
                self.provider.update_call_twiml(
                    str(sid), Document().speak(speech).hangup().render()
                )
                kind, data = "call.voicemail_left", {}
            except ProviderError as exc:
                kind, data = "call.voicemail_failed", {"error": exc.message}
            with self.sessions.begin() as session:
                record(
                    session, case_id, kind, f"worker:{self.worker_id}", data, attempt_id=attempt_id
                )
        return len(rows)

    def deliver_feedback(self) -> int:
        return feedback.deliver_due(
            self.sessions, self.settings.feedback, self.worker_id, utcnow(), self.http
        )

    def reconcile(self) -> int:
        """Fetch the state of attempts whose callbacks never came."""
        now = utcnow()
        cutoff = now - timedelta(
            seconds=self.settings.worker.reconcile_after_seconds / self.settings.time_scale
        )
        with read_session(self.sessions) as session:
            stuck = session.execute(
                select(Attempt.id, Attempt.channel, Attempt.provider_sid)
                .where(
                    Attempt.state == AttemptState.PLACED.value,
                    Attempt.placed_at < cutoff,
                    Attempt.provider_sid.is_not(None),
                )
                .limit(50)
            ).all()
        fixed = 0
        for attempt_id, channel, sid in stuck:
            try:
                remote = (
                    self.provider.fetch_call(str(sid))
                    if channel == Channel.CALL.value
                    else self.provider.fetch_message(str(sid))
                )
            except ProviderError as exc:
                log.info("reconcile of attempt %s failed: %s", attempt_id, exc.message)
                continue
            with self.sessions.begin() as session:
                attempt = session.get(Attempt, attempt_id, with_for_update=True)
                if attempt is None:
                    continue
                if channel == Channel.CALL.value:
                    params = {
                        "CallStatus": remote.status,
                        "CallDuration": str(remote.duration or ""),
                        "AnsweredBy": remote.answered_by or "",
                    }
                    changed = apply_call_status(attempt, params, now)
                else:
                    params = {
                        "MessageStatus": remote.status,
                        "ErrorCode": str(remote.error_code or ""),
                    }
                    changed = apply_sms_status(attempt, params, now)
                if changed:
                    record(
                        session,
                        attempt.case_id,
                        "attempt.reconciled",
                        f"worker:{self.worker_id}",
                        params,
                        attempt_id=attempt_id,
                        at=now,
                    )
                    session.execute(
                        update(Case).where(Case.id == attempt.case_id).values(next_review_at=now)
                    )
                    fixed += 1
        return fixed

    def close(self) -> None:
        self.dispatcher.close()
        self.http.close()


def build_provider(settings: Settings) -> Provider:
    import importlib

    from robot.providers.twilio import TwilioProvider

    # The SDK imports its REST resources (~95 modules, 0.3 s) on the first call. Threads that
    # waited on that import behind their pacing slots all sent at once when it ended: the
    # first second after start held up to 1.5x the call limit. Import them before any slot.
    importlib.import_module("twilio.rest.api.v2010.account")
    return TwilioProvider(settings.twilio)


def _reconnect(old: WakeListener, engine: Any, stop: threading.Event, wait: float) -> WakeListener:
    with contextlib.suppress(Exception):
        old.close()
    while not stop.wait(wait):
        try:
            return WakeListener(engine)
        except Exception:
            log.warning("wake-up listener still unavailable")
    return old


def run_worker(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Run the worker until ``stop`` is set (or SIGTERM/SIGINT in a process of its own).

    ``ready`` is set once it listens for wake-ups and its clock runs: work stored after that is
    picked up at once (an embedding caller, such as the end-to-end tests, waits for it).
    """
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per tick is noise
    # The twilio SDK logs every REST request and response at INFO (about ten lines a call):
    # 5% of the worker's samples while placing, and the lines carry nothing we need.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    engine = create_db_engine(settings.database)
    worker = Worker(settings, create_session_factory(engine), build_provider(settings))
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():  # a process of its own
        freeze_startup_objects()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    scheduler = BackgroundScheduler(timezone=UTC)
    # coalesce + max_instances=1: a slow tick is never run twice at once nor queued up.
    common: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
    scheduler.add_job(
        worker.tick, "interval", seconds=settings.worker.poll_interval, id="tick", **common
    )
    scheduler.add_job(worker.deliver_feedback, "interval", seconds=1, id="feedback", **common)
    scheduler.add_job(worker.reconcile, "interval", seconds=30, id="reconcile", **common)
    listener = WakeListener(engine)
    scheduler.start()
    log.info("worker %s started", worker.worker_id)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            try:
                woken = listener.wait(0.0 if worker.behind.is_set() else 0.1)
            except Exception:  # the LISTEN connection dropped: poll, and listen again later
                log.warning("wake-up listener failed; polling until it reconnects", exc_info=True)
                listener = _reconnect(listener, engine, stop, settings.worker.poll_interval)
                continue
            if woken or worker.behind.is_set():
                worker.behind.clear()
                # Run the tick now, in this thread: handing it to APScheduler cost two thread
                # switches (its scheduler, then its executor), each up to a GIL switch interval
                # on a busy worker, and a wake-up during a tick logged a skipped run. A tick
                # already running (the interval's) goes round once more instead.
                try:
                    worker.tick()
                except Exception:  # as APScheduler would: log it, the next wake-up tries again
                    log.exception("tick failed")
    finally:
        log.info("worker %s stopping: finishing in-flight work", worker.worker_id)
        scheduler.shutdown(wait=True)
        worker.close()
        listener.close()
        engine.dispose()
