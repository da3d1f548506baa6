"""Pure helpers: signing, segments, callee behaviours, limits, TwiML helpers."""

from __future__ import annotations

import io
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from robot.emulator.callees import (
    Callee,
    behaviour_for,
    call_behaviour_for,
    parse_behaviour,
    parse_keys,
)
from robot.emulator.errors import ApiError
from robot.emulator.limits import FaultInjector, RateWindow
from robot.emulator.segments import count_segments
from robot.emulator.signing import compute_signature
from robot.emulator.twiml import TwimlError, parse_document, resolve, say_seconds, wav_seconds


def test_signature_matches_twilio_test_vector() -> None:
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert compute_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_signature_of_repeated_keys_is_accepted_by_the_sdk() -> None:
    params = [("StatusCallbackEvent", "ringing"), ("StatusCallbackEvent", "answered"), ("A", "1")]
    signature = compute_signature("tok", "http://h/cb", params)
    assert RequestValidator("tok").validate("http://h/cb", MultiDict(params), signature)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(deadline=None)  # a loaded machine runs an example late, not wrong
@given(
    token=st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t),
    path=st.from_regex(r"/[a-z0-9/]{0,20}(\?[a-z]=[0-9]{1,3})?", fullmatch=True),
    params=st.lists(st.tuples(st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True), _text), max_size=8),
)
def test_signature_agrees_with_sdk(token: str, path: str, params: list[tuple[str, str]]) -> None:
    url = "https://example.com:8443" + path
    ours = compute_signature(token, url, params)
    validator = RequestValidator(token)
    assert ours == validator.compute_signature(url, MultiDict(params))
    assert validator.validate(url, MultiDict(params), ours)


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("您" * 70, 1),
        ("您" * 71, 2),
        ("您" * 134, 2),
        ("您" * 135, 3),
        ("a" * 69 + "😀", 2),  # an emoji is two UTF-16 code units
    ],
)
def test_segments(body: str, segments: int) -> None:
    assert count_segments(body) == segments


def test_behaviours_parse() -> None:
    assert parse_behaviour("human:1") == Callee("human", ("1",), "human:1")
    assert parse_behaviour("human:9,1").keys == ("9", "1")
    assert parse_behaviour("human:none").keys == ("",)
    assert parse_behaviour("human:none,1").keys_for(1) == "1"
    assert parse_behaviour("long-ring:1").kind == "long-ring"
    assert parse_behaviour("busy").answers is False
    assert parse_keys("9,1") == ("9", "1")
    assert parse_keys("") == ()
    for bad in ("robot", "busy:1", "human:x", ""):
        with pytest.raises(ValueError):
            parse_behaviour(bad)


def test_last_digit_table_and_overrides() -> None:
    kinds = [behaviour_for(f"+1555000000{d}", {}).kind for d in range(10)]
    assert kinds == [
        "human",
        "human",
        "human",
        "human",
        "hangup",
        "no-answer",
        "busy",
        "voicemail",
        "unreachable",
        "long-ring",
    ]
    assert behaviour_for("+15550000000", {"+15550000000": "busy"}).kind == "busy"
    # SMS-only faults leave the call behaviour to the last digit
    assert call_behaviour_for("+15550000006", {"+15550000006": "landline"}).kind == "busy"


def test_rate_window_slides() -> None:
    window = RateWindow(2)
    assert window.try_acquire(0.0) and window.try_acquire(0.1)
    assert not window.try_acquire(0.5)
    assert window.try_acquire(1.05)
    slow = RateWindow(0.5)  # one every two seconds
    assert slow.try_acquire(0.0) and not slow.try_acquire(1.5) and slow.try_acquire(2.1)
    assert all(RateWindow(0).try_acquire(0.0) for _ in range(1000))


def test_faults_count_down() -> None:
    faults = FaultInjector()
    faults.add("calls", 2, 503)
    first = faults.take("calls")
    assert isinstance(first, ApiError) and (first.status, first.code) == (503, 20503)
    assert faults.take("messages") is None
    assert faults.take("calls") is not None
    assert faults.take("calls") is None
    with pytest.raises(ValueError):
        faults.add("faxes", 1, 500)


def test_twiml_helpers() -> None:
    assert resolve("http://s/voice/a?x=1", "/gather") == "http://s/gather"
    assert resolve("http://s/voice/a", "b") == "http://s/voice/b"
    assert resolve(None, "/gather") is None
    assert resolve(None, "https://x/y") == "https://x/y"
    doc = parse_document('<Response><Say loop="2">' + "x" * 24 + "</Say></Response>", None)
    assert say_seconds(doc.root[0]) == pytest.approx(4.0)
    with pytest.raises(TwimlError):
        parse_document("<Html/>", None)
    with pytest.raises(TwimlError):
        parse_document("not xml", None)


def test_wav_seconds() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * 8000 * 3)
    assert wav_seconds(buffer.getvalue()) == pytest.approx(3.0)
    assert wav_seconds(b"ID3 not a wav") is None
