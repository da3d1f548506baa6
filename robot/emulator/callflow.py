"""How one call plays out: ringing, answer, AMD, TwiML, callbacks, until a terminal status.

:class:`CallRun` is the call's side of :class:`~.interpreter.CallControl`; :func:`outbound` and
:func:`inbound` are the simulations the scheduler runs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator

from robot.emulator.callees import Callee, call_behaviour_for
from robot.emulator.formats import API_VERSION, is_e164, new_sid, rfc2822
from robot.emulator.interpreter import (
    CallEnded,
    DialOutcome,
    Redirected,
    sleep,
)
from robot.emulator.interpreter import run as run_twiml
from robot.emulator.records import CallRecord, DigitsRecord, Params, Update
from robot.emulator.scheduler import Simulation
from robot.emulator.state import EmulatorState
from robot.emulator.twiml import (
    DEFAULT_PLAY_SECONDS,
    Document,
    TwimlError,
    parse_document,
    tag,
    wav_seconds,
)

log = logging.getLogger(__name__)

# Emulated seconds.
SETUP_SECONDS = 1.0  # initiated → ringing
RING_SECONDS = 3.0  # an ordinary callee picks up
VOICEMAIL_RING_SECONDS = 6.0
BUSY_SECONDS = 2.0
HANGUP_AFTER_SECONDS = 2.5  # the "hangup" callee, after answering
AMD_HUMAN_SECONDS = 2.0
AMD_MACHINE_START_SECONDS = 3.0
VOICEMAIL_GREETING_SECONDS = 6.0  # then the beep (machine_end_beep)
DIAL_TALK_SECONDS = 20.0  # a bridged <Dial> leg talks this long

SIP_CODES = {"completed": 200, "busy": 486, "no-answer": 487, "canceled": 487, "failed": 480}
UNREACHABLE_ERROR = (21214, "'To' phone number cannot be reached")


def ring_seconds(callee: Callee, long_ring: float) -> float | None:
    """How long the phone rings before the callee picks up (None: never)."""
    if callee.kind == "long-ring":
        return long_ring
    if callee.kind == "voicemail":
        return VOICEMAIL_RING_SECONDS
    if callee.kind in ("human", "hangup"):
        return RING_SECONDS
    return None


def amd_outcome(callee: Callee, mode: str) -> tuple[str, float]:
    """AnsweredBy and the emulated seconds detection takes."""
    if callee.kind == "voicemail":
        if mode.strip().lower() == "detectmessageend":
            return "machine_end_beep", VOICEMAIL_GREETING_SECONDS
        return "machine_start", AMD_MACHINE_START_SECONDS
    return "human", AMD_HUMAN_SECONDS


class CallRun:
    """A call while it runs: its :class:`CallControl` and its status/callback bookkeeping."""

    def __init__(self, state: EmulatorState, call: CallRecord) -> None:
        self.state = state
        self.call = call
        self.deadline = math.inf
        self.deadline_reason = ""
        #: Emulated time of the answer (None until answered).
        self.answered: float | None = None

    # --- CallControl ----------------------------------------------------------------------

    def now(self) -> float:
        return self.state.emulated_now()

    def check(self) -> None:
        state, call = self.state, self.call
        with state.lock:
            if call.generation != state.generation:
                raise CallEnded("reset")
            if call.hangup_requested:
                raise CallEnded("api")
            update = call.pending_update
            if update is not None:
                call.pending_update = None
                raise Redirected(update)
        if self.now() >= self.deadline - 1e-6:
            raise CallEnded(self.deadline_reason)

    def remaining(self, until: float) -> float:
        return min(until, self.deadline) - self.now()

    def fetch(self, kind: str, url: str, method: str, extra: Params) -> Document | None:
        params = self.voice_params() + extra
        result, record = self.state.webhooks.send_recorded(kind, url, method, params)
        with self.state.lock:
            self.call.documents.append(record)
        if not result.ok:
            self._app_error(11200, f"HTTP retrieval failure: {result.error or result.status_code}")
            return None
        try:
            return parse_document(result.body, url)
        except TwimlError as exc:
            self._app_error(12100, f"Document parse failure: {exc}")
            return None

    def load_update(self, update: Update) -> Document | None:
        if update.url:
            return self.fetch("update", update.url, update.method, [])
        try:
            return parse_document(update.twiml or "", None)
        except TwimlError as exc:
            self._app_error(12100, f"Document parse failure: {exc}")
            return None

    def next_gather_keys(self) -> tuple[int, str]:
        with self.state.lock:
            index = self.call.gather_count
            self.call.gather_count += 1
            return index, self.call.callee.keys_for(index)

    def record_digits(self, gather_index: int, digits: str) -> None:
        with self.state.lock:
            self.call.digits.append(DigitsRecord(time.time(), gather_index, digits))
            self.call.add_event("digits", digits)

    def play_seconds(self, url: str) -> float:
        state = self.state
        with state.lock:
            known = state.media_seconds.get(url)
        if known is not None:
            return known
        data = state.webhooks.fetch_media(url)
        seconds = (wav_seconds(data) if data else None) or DEFAULT_PLAY_SECONDS
        with state.lock:
            state.media_seconds[url] = seconds
        return seconds

    def note(self, status: str, detail: str = "") -> None:
        with self.state.lock:
            self.call.add_event(status, detail)

    def dial(
        self, number: str, timeout: int, time_limit: int
    ) -> Generator[float, None, DialOutcome]:
        state, parent = self.state, self.call
        if not is_e164(number):
            self.note("dial", f"cannot dial {number!r}")
            return DialOutcome("failed", None, 0)
        with state.lock:
            callee = call_behaviour_for(number, state.overrides)
            child = CallRecord(
                sid=new_sid("CA"),
                account_sid=parent.account_sid,
                to=number,
                from_=parent.to,
                direction="outbound-dial",
                callee=callee,
                parent_call_sid=parent.sid,
                generation=state.generation,
                status_callback_events=frozenset(),
            )
            child.add_event("queued")
            state.calls[child.sid] = child
            parent.add_event("dial", f"{number} {child.sid}")
        answered_at: float | None = None
        try:
            yield from sleep(self, SETUP_SECONDS)
            if callee.kind in ("unreachable", "invalid"):
                self._set_child(child, "failed")
                return DialOutcome("failed", child.sid, 0)
            if callee.kind == "busy":
                yield from sleep(self, BUSY_SECONDS)
                self._set_child(child, "busy")
                return DialOutcome("busy", child.sid, 0)
            self._set_child(child, "ringing")
            ring = ring_seconds(callee, self.state.settings.long_ring_seconds)
            if ring is None or ring >= timeout:
                yield from sleep(self, timeout)
                self._set_child(child, "no-answer")
                return DialOutcome("no-answer", child.sid, 0)
            yield from sleep(self, ring)
            self._set_child(child, "in-progress")
            answered_at = self.now()
            talk = HANGUP_AFTER_SECONDS if callee.kind == "hangup" else DIAL_TALK_SECONDS
            talk = min(talk, float(time_limit))
            yield from sleep(self, talk)
            duration = round(talk)  # as planned, not as late as the timer woke us
            self._set_child(child, "completed", duration)
            return DialOutcome("completed", child.sid, duration)
        except (CallEnded, Redirected):
            if answered_at is None:
                self._set_child(child, "canceled")
            else:
                self._set_child(child, "completed", round(self.now() - answered_at))
            raise

    # --- status ---------------------------------------------------------------------------

    def voice_params(self, call_status: str | None = None) -> Params:
        call = self.call
        with self.state.lock:
            params: Params = [
                ("AccountSid", call.account_sid),
                ("ApiVersion", API_VERSION),
                ("CallSid", call.sid),
                ("CallStatus", call_status or call.status),
                ("Called", call.to),
                ("Caller", call.from_),
                ("Direction", call.direction),
                ("From", call.from_),
                ("To", call.to),
            ]
            if call.parent_call_sid:
                params.append(("ParentCallSid", call.parent_call_sid))
            if call.answered_by:
                params.append(("AnsweredBy", call.answered_by))
        return params

    def initiated(self) -> None:
        self.note("initiated")
        self.status_callback("initiated", "initiated")

    def ringing(self) -> None:
        with self.state.changed:
            self.call.status = "ringing"
            self.call.add_event("ringing")
            self.state.changed.notify_all()
        self.status_callback("ringing", "ringing")

    def answer(self) -> None:
        call = self.call
        with self.state.changed:
            call.status = "in-progress"
            call.start_time = time.time()
            call.answered_at = time.monotonic()
            call.add_event("in-progress", "answered")
            self.state.changed.notify_all()
        now = self.answered = self.now()
        self.deadline, self.deadline_reason = now + call.time_limit, "time-limit"
        if call.callee.kind == "hangup" and now + HANGUP_AFTER_SECONDS < self.deadline:
            self.deadline, self.deadline_reason = now + HANGUP_AFTER_SECONDS, "callee-hangup"
        self.status_callback("answered", "in-progress")

    def finish(
        self,
        status: str,
        detail: str = "",
        error: tuple[int, str] | None = None,
        at: float | None = None,
    ) -> None:
        """End the call; ``at`` is the emulated end time when it was planned (a deadline)."""
        state, call = self.state, self.call
        end = self.now() if at is None else at
        with state.changed:
            if call.terminal or call.generation != state.generation:
                return
            call.status = status
            call.end_time = time.time()
            call.duration = 0 if self.answered is None else max(0, round(end - self.answered))
            call.sip_response_code = SIP_CODES.get(status)
            if error is not None:
                call.error_code, call.error_message = error
            if call.counts_as_active:
                call.counts_as_active = False
                state.active_calls -= 1
            call.add_event(status, detail)
            amd_unsent = (
                call.async_amd
                and bool(call.machine_detection)
                and not call.amd_sent
                and call.answered_at is not None
            )
            state.changed.notify_all()
        self.status_callback("completed", status)
        if amd_unsent:
            self.send_amd("unknown", None)

    def status_callback(self, event: str, call_status: str) -> None:
        call = self.call
        params = self.voice_params(call_status)
        with self.state.lock:
            if not call.status_callback or event not in call.status_callback_events:
                return
            sequence = call.sequence
            call.sequence += 1
            params += [
                ("CallbackSource", "call-progress-events"),
                ("SequenceNumber", str(sequence)),
                ("Timestamp", rfc2822(time.time()) or ""),
            ]
            if event == "completed":
                params.append(("CallDuration", str(call.duration or 0)))
                params.append(("Duration", str(math.ceil((call.duration or 0) / 60))))
                if call.sip_response_code is not None:
                    params.append(("SipResponseCode", str(call.sip_response_code)))
                if call.error_code is not None and call_status == "failed":
                    params.append(("ErrorCode", str(call.error_code)))
                    params.append(("ErrorMessage", call.error_message or ""))
            url, method = call.status_callback, call.status_callback_method
        self._send_async("status-callback", url, method, params, event)

    def schedule_amd(self, answered_by: str, seconds: float) -> None:
        self.state.scheduler.call_later(seconds, lambda: self.send_amd(answered_by, seconds))

    def send_amd(self, answered_by: str, seconds: float | None) -> None:
        state, call = self.state, self.call
        with state.lock:
            if call.amd_sent or call.generation != state.generation:
                return
            call.amd_sent = True
            if seconds is None and call.answered_at is not None:
                seconds = (time.monotonic() - call.answered_at) * state.settings.time_scale
            call.answered_by = answered_by
            call.add_event("amd", answered_by)
            url, method = call.amd_callback, call.amd_callback_method
            params: Params = [
                ("AccountSid", call.account_sid),
                ("AnsweredBy", answered_by),
                ("CallSid", call.sid),
                ("MachineDetectionDuration", str(round((seconds or 0) * 1000))),
            ]
        if url:
            self._send_async("amd-callback", url, method, params, "amd")

    def set_answered_by(self, answered_by: str) -> None:
        with self.state.lock:
            self.call.answered_by = answered_by
            self.call.amd_sent = True
            self.call.add_event("amd", answered_by)

    def on_error(self, exc: BaseException) -> None:
        log.error("call %s: emulator error", self.call.sid, exc_info=exc)
        self.finish("failed", f"emulator error: {exc!r}")

    # --- internals ------------------------------------------------------------------------

    def _send_async(self, kind: str, url: str, method: str, params: Params, event: str) -> None:
        state, call = self.state, self.call
        generation = call.generation

        def deliver() -> None:
            if generation != state.generation:
                return
            _, record = state.webhooks.send_recorded(kind, url, method, params, event)
            with state.changed:
                if generation == state.generation:
                    call.callbacks.append(record)
                    state.changed.notify_all()

        state.lanes.submit(call.sid, deliver)

    def _app_error(self, code: int, message: str) -> None:
        with self.state.lock:
            self.call.error_code, self.call.error_message = code, message
            self.call.add_event("error", f"{code} {message}")

    def _set_child(self, child: CallRecord, status: str, duration: int | None = None) -> None:
        with self.state.changed:
            if child.terminal:
                return
            child.status = status
            now = time.time()
            if status == "in-progress":
                child.start_time = now
            if child.terminal:
                child.end_time = now
                child.duration = duration or 0
                child.sip_response_code = SIP_CODES.get(status)
            child.add_event(status)
            self.state.changed.notify_all()


# --- simulations ------------------------------------------------------------------------------


def outbound(run: CallRun) -> Simulation:
    """A REST-created call from queued to its terminal status."""
    call = run.call
    callee = call.callee
    try:
        run.initiated()
        yield from sleep(run, SETUP_SECONDS)
        if callee.kind in ("unreachable", "invalid"):
            run.finish("failed", "unreachable", UNREACHABLE_ERROR)
            return
        if callee.kind == "busy":
            yield from sleep(run, BUSY_SECONDS)
            run.finish("busy")
            return
        run.ringing()
        ring = ring_seconds(callee, run.state.settings.long_ring_seconds)
        if ring is None or ring >= call.timeout:
            yield from sleep(run, float(call.timeout))
            run.finish("no-answer")
            return
        yield from sleep(run, ring)
    except CallEnded as ended:
        run.finish("canceled", ended.reason)
        return
    except Redirected:  # pragma: no cover - updates before answer change the call's Url
        pass
    yield from converse(run, None)


def inbound(run: CallRun, url: str) -> Simulation:
    """A person calls the service: the voice URL decides (Reject) before the call is answered."""
    try:
        yield from sleep(run, SETUP_SECONDS)
        document = run.fetch("inbound-voice", url, "POST", [])
        if document is None:
            run.finish("failed", "voice URL failed")
            return
        first = next(iter(document.root), None)
        if first is not None and tag(first) == "Reject":
            reason = first.get("reason", "rejected")
            run.finish("busy" if reason == "busy" else "no-answer", f"rejected ({reason})")
            return
    except CallEnded as ended:
        run.finish("canceled", ended.reason)
        return
    except Redirected:  # pragma: no cover
        return
    yield from converse(run, document)


def converse(run: CallRun, document: Document | None) -> Simulation:
    """From answer to hang-up: AMD, the call's TwiML, then ``completed``."""
    call = run.call
    detail = "twiml ended"
    planned_end: float | None = None
    try:
        run.answer()
        try:
            if call.machine_detection:
                answered_by, seconds = amd_outcome(call.callee, call.machine_detection)
                if call.async_amd:
                    run.schedule_amd(answered_by, seconds)
                else:
                    yield from sleep(run, seconds)
                    run.set_answered_by(answered_by)
            if document is None:
                document = _initial_document(run)
        except Redirected as redirect:
            document = run.load_update(redirect.update)
        yield from run_twiml(run, document)
    except CallEnded as ended:
        detail = ended.reason
        if ended.reason == run.deadline_reason:
            planned_end = run.deadline
    run.finish("completed", detail, at=planned_end)


def _initial_document(run: CallRun) -> Document | None:
    call = run.call
    with run.state.lock:
        url, method, twiml = call.url, call.method, call.twiml
    if url:
        return run.fetch("twiml", url, method, [])
    return run.load_update(Update(None, method, twiml or ""))


def start(
    state: EmulatorState, call: CallRecord, simulation: Callable[[CallRun], Simulation]
) -> None:
    run = CallRun(state, call)
    task = state.scheduler.start(simulation(run), run.on_error)
    with state.lock:
        call.wake = lambda: state.scheduler.wake(task)
