"""Plays a TwiML document to an emulated callee.

The interpreter is a generator (see :mod:`.scheduler`): it yields emulated seconds to wait
and calls back into a :class:`CallControl` for everything that touches the call or the network.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Generator
from dataclasses import dataclass
from typing import Protocol

from robot.emulator.records import Update
from robot.emulator.twiml import (
    Document,
    int_attr,
    is_true,
    loops,
    resolve,
    say_seconds,
    tag,
)

#: Emulated seconds a callee takes to press a key once the prompt has ended.
KEY_DELAY = 1.0
#: Documents one call may go through (stops Redirect loops that never wait).
MAX_DOCUMENTS = 500

Sleep = Generator[float, None, None]


class CallEnded(Exception):
    """The call is over: <Hangup>, callee hung up, API hang-up, time limit or a fetch failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Redirected(Exception):
    """``calls(sid).update(url=…|twiml=…)`` replaced the running document."""

    def __init__(self, update: Update) -> None:
        super().__init__("redirected")
        self.update = update


@dataclass(frozen=True)
class DialOutcome:
    status: str  # completed | no-answer | busy | failed | canceled
    call_sid: str | None
    duration: int


class CallControl(Protocol):
    """What the interpreter needs from the running call."""

    def now(self) -> float:
        """Emulated seconds on a monotonic clock."""

    def check(self) -> None:
        """Raise CallEnded / Redirected if the call was hung up, timed out or updated."""

    def remaining(self, until: float) -> float:
        """Emulated seconds from now until ``until`` or the call's deadline, whichever is first."""

    def fetch(
        self, kind: str, url: str, method: str, extra: list[tuple[str, str]]
    ) -> Document | None:
        """Request TwiML from the service; None when that failed (the call then ends)."""

    def load_update(self, update: Update) -> Document | None:
        """The document an API update points at."""

    def next_gather_keys(self) -> tuple[int, str]:
        """(index of this gather in the call, keys the callee will press on it)."""

    def record_digits(self, gather_index: int, digits: str) -> None: ...

    def play_seconds(self, url: str) -> float: ...

    def note(self, status: str, detail: str = "") -> None:
        """Add an event to the call's history."""

    def dial(
        self, number: str, timeout: int, time_limit: int
    ) -> Generator[float, None, DialOutcome]:
        """Ring ``number`` as a child leg and talk until it ends."""


@dataclass(frozen=True)
class Goto:
    """Replace the current document (None: the call ends)."""

    document: Document | None


def sleep(ctl: CallControl, seconds: float) -> Sleep:
    """Wait ``seconds`` of emulated time, ending early if the call ends or is redirected."""
    end = ctl.now() + seconds
    while True:
        ctl.check()
        left = ctl.remaining(end)
        if left <= 1e-6:
            break
        yield left
    ctl.check()


def run(ctl: CallControl, document: Document | None) -> Sleep:
    """Play documents until one ends without handing over to another; CallEnded ends early."""
    seen = 0
    while document is not None:
        seen += 1
        if seen > MAX_DOCUMENTS:
            ctl.note("error", f"more than {MAX_DOCUMENTS} TwiML documents; hanging up")
            return
        try:
            document = yield from execute(ctl, document)
        except Redirected as redirect:
            ctl.note("redirected", redirect.update.url or "inline TwiML")
            document = ctl.load_update(redirect.update)


def execute(ctl: CallControl, doc: Document) -> Generator[float, None, Document | None]:
    for verb in list(doc.root):
        name = tag(verb)
        goto: Goto | None = None
        if name in ("Say", "Play", "Pause"):
            yield from listen(ctl, doc, verb)
        elif name == "Gather":
            goto = yield from gather(ctl, doc, verb)
        elif name == "Dial":
            goto = yield from dial(ctl, doc, verb)
        elif name == "Redirect":
            url = resolve(doc.url, verb.text)
            if url is None:
                ctl.note("skipped", "Redirect without a usable URL")
                continue
            goto = Goto(ctl.fetch("redirect", url, verb.get("method", "POST"), []))
        elif name in ("Hangup", "Reject"):
            raise CallEnded(name.lower())
        else:
            ctl.note("skipped", f"<{name}> is not emulated")
        if goto is not None:
            return goto.document
    return None


def listen(ctl: CallControl, doc: Document, verb: ET.Element) -> Sleep:
    name = tag(verb)
    if name == "Say":
        seconds = say_seconds(verb)
    elif name == "Pause":
        seconds = float(max(0, int_attr(verb, "length", 1)))
    else:
        url = resolve(doc.url, verb.text)
        seconds = (ctl.play_seconds(url) if url else 1.0) * loops(verb)
    yield from sleep(ctl, seconds)


def gather(
    ctl: CallControl, doc: Document, verb: ET.Element
) -> Generator[float, None, Goto | None]:
    index, keys = ctl.next_gather_keys()
    if "dtmf" not in (verb.get("input") or "dtmf").lower():
        keys = ""  # speech only: key presses are not collected
    for child in list(verb):
        if tag(child) in ("Say", "Play", "Pause"):
            yield from listen(ctl, doc, child)
    timeout = max(1, int_attr(verb, "timeout", 5))
    num_digits = int_attr(verb, "numDigits", 0)
    action = resolve(doc.url, verb.get("action")) or doc.url
    method = verb.get("method", "POST")
    finish_on = verb.get("finishOnKey", "#")
    finished = bool(finish_on) and finish_on in keys
    if finished:  # the key that ends input is not part of Digits
        keys = keys[: keys.index(finish_on)]
    if keys:
        digits = keys[:num_digits] if num_digits > 0 else keys
        yield from sleep(ctl, KEY_DELAY * len(digits))
        if 0 < num_digits and len(digits) < num_digits and not finished:
            yield from sleep(ctl, timeout)  # waits for the rest, then takes what it has
        ctl.record_digits(index, digits)
        if action is None:
            return None
        return Goto(ctl.fetch("gather-action", action, method, [("Digits", digits)]))
    yield from sleep(ctl, timeout)
    if action is not None and is_true(verb.get("actionOnEmptyResult")):
        return Goto(ctl.fetch("gather-action", action, method, []))
    return None


def dial(ctl: CallControl, doc: Document, verb: ET.Element) -> Generator[float, None, Goto | None]:
    number = (verb.text or "").strip()
    for child in list(verb):
        if tag(child) in ("Number", "Client", "Sip"):
            number = (child.text or "").strip()
            break
    timeout = max(1, int_attr(verb, "timeout", 30))
    time_limit = max(1, int_attr(verb, "timeLimit", 14400))
    outcome = yield from ctl.dial(number, timeout, time_limit)
    action = resolve(doc.url, verb.get("action"))
    if action is None:
        return None
    params = [("DialCallStatus", outcome.status)]
    if outcome.call_sid:
        params.append(("DialCallSid", outcome.call_sid))
    if outcome.status == "completed":
        params.append(("DialCallDuration", str(outcome.duration)))
    return Goto(ctl.fetch("dial-action", action, verb.get("method", "POST"), params))
